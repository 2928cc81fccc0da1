-- wrk script for bench/harness.py: POST /v1/coupons/apply under load.
--
-- wrk -s bench/wrk_apply.lua URL -- API_KEY MODE HOT_CODE UNIFORM_PREFIX UNIFORM_COUNT RUN_ID
--   MODE "hot": every request redeems HOT_CODE.
--   MODE "uniform": every request redeems UNIFORM_PREFIX .. a random index in [0, UNIFORM_COUNT),
--   zero-padded to 5 digits (the harness creates the coupons under those codes).
--   MODE "sweep": the uniform codes in turn, each thread from its own offset (the warm-up, so
--   that every coupon has been used once before the measured run).
--   MODE "list": every request is GET /v1/coupons?limit=50 (bench/scale.py's read throughput).
-- Every request carries a fresh Idempotency-Key: RUN_ID, the wrk thread's number, a counter.
-- done() prints one line, "BENCH_RESULT {json}", that the harness parses.

local threads = {}
local next_thread_id = 1

function setup(thread)
   thread:set("thread_id", next_thread_id)
   next_thread_id = next_thread_id + 1
   table.insert(threads, thread)
end

function init(args)
   api_key = args[1]
   mode = args[2]
   hot_code = args[3]
   uniform_prefix = args[4]
   uniform_count = tonumber(args[5])
   run_id = args[6]
   sent = 0
   statuses = {}        -- non-2xx status -> count, in this thread
   first_error = ""     -- body of this thread's first non-2xx response
   math.randomseed(os.time() * 1000 + thread_id)
   headers = {
      ["Authorization"] = "Bearer " .. api_key,
      ["Content-Type"] = "application/json",
   }
end

function request()
   sent = sent + 1
   if mode == "list" then
      return wrk.format("GET", "/v1/coupons?limit=50", headers)
   end
   local code = hot_code
   if mode == "uniform" then
      code = string.format("%s%05d", uniform_prefix, math.random(0, uniform_count - 1))
   elseif mode == "sweep" then
      local offset = (thread_id - 1) * math.floor(uniform_count / 2)
      code = string.format("%s%05d", uniform_prefix, (offset + sent - 1) % uniform_count)
   end
   headers["Idempotency-Key"] = run_id .. "-" .. thread_id .. "-" .. sent
   return wrk.format("POST", nil, headers, '{"code":"' .. code .. '","subtotal":"100.00"}')
end

function response(status, response_headers, body)
   if status < 200 or status > 299 then
      local key = tostring(status)
      statuses[key] = (statuses[key] or 0) + 1
      if first_error == "" then
         first_error = tostring(status) .. " " .. (body or "")
      end
   end
end

local function json_string(text)
   return '"' .. string.gsub(text, '[%c"\\]', function(c)
      return string.format("\\u%04x", string.byte(c))
   end) .. '"'
end

function done(summary, latency, requests)
   local seconds = summary.duration / 1e6
   local errors = summary.errors
   local status_fields = {}
   local first_error_seen = ""
   local merged = {}
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses") or {}) do
         merged[status] = (merged[status] or 0) + count
      end
      local body = thread:get("first_error") or ""
      if first_error_seen == "" and body ~= "" then
         first_error_seen = body
      end
   end
   local non2xx = 0
   for status, count in pairs(merged) do
      table.insert(status_fields, string.format('"%s":%d', status, count))
      non2xx = non2xx + count
   end
   local ok = math.max(0, summary.requests - non2xx)
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"ok":%d,"seconds":%.6f,"requests_per_s":%.3f,"ok_per_s":%.3f,'
         .. '"p50_ms":%.3f,"p99_ms":%.3f,"non2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,'
         .. '"statuses":{%s},"first_error":%s}\n',
      summary.requests, ok, seconds, summary.requests / seconds, ok / seconds,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      non2xx, errors.connect, errors.read, errors.write, errors.timeout,
      table.concat(status_fields, ","), json_string(string.sub(first_error_seen, 1, 300))
   ))
end
