-- wrk script for bench/capacity.py: POST /v1/coupons with a new, unique code per request.
--
-- wrk -s bench/wrk_create.lua URL -- API_KEY RUN_ID PER_THREAD
--   Codes are "C" .. RUN_ID .. "-" .. the wrk thread's number .. "-" .. a counter (A-Z, 0-9 and '-';
--   RUN_ID must be upper-case letters and digits). Each thread stops itself once PER_THREAD of its
--   requests have been answered 201: wrk has no request count limit, so -d is only a safety net.
--   Requests still in flight when a thread stops may be created too (at most the connections).
-- done() prints one line, "CREATE_RESULT {json}", that the benchmark parses.

local threads = {}
local next_thread_id = 1

function setup(thread)
   thread:set("thread_id", next_thread_id)
   next_thread_id = next_thread_id + 1
   table.insert(threads, thread)
end

function init(args)
   api_key = args[1]
   run_id = args[2]
   per_thread = tonumber(args[3])
   sent = 0
   created = 0
   failed = 0
   first_error = ""
   headers = {
      ["Authorization"] = "Bearer " .. api_key,
      ["Content-Type"] = "application/json",
   }
end

function request()
   sent = sent + 1
   local code = "C" .. run_id .. "-" .. thread_id .. "-" .. sent
   return wrk.format("POST", nil, headers,
      '{"code":"' .. code .. '","discount_type":"percentage","discount_value":"10"}')
end

function response(status, response_headers, body)
   if status == 201 then
      created = created + 1
   else
      failed = failed + 1
      if first_error == "" then
         first_error = tostring(status) .. " " .. (body or "")
      end
   end
   if created >= per_thread then
      wrk.thread:stop()
   end
end

local function json_string(text)
   return '"' .. string.gsub(text, '[%c"\\]', function(c)
      return string.format("\\u%04x", string.byte(c))
   end) .. '"'
end

function done(summary, latency, requests)
   local created_total = 0
   local failed_total = 0
   local first_error_seen = ""
   for _, thread in ipairs(threads) do
      created_total = created_total + (thread:get("created") or 0)
      failed_total = failed_total + (thread:get("failed") or 0)
      local body = thread:get("first_error") or ""
      if first_error_seen == "" and body ~= "" then
         first_error_seen = body
      end
   end
   local errors = summary.errors
   io.write(string.format(
      'CREATE_RESULT {"requests":%d,"created":%d,"failed":%d,"seconds":%.6f,"p50_ms":%.3f,"p99_ms":%.3f,'
         .. '"connect":%d,"read":%d,"write":%d,"timeout":%d,"first_error":%s}\n',
      summary.requests, created_total, failed_total, summary.duration / 1e6,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      errors.connect, errors.read, errors.write, errors.timeout,
      json_string(string.sub(first_error_seen, 1, 300))
   ))
end
