// The campaigns page: the list with each campaign's results against its budget, the CSV export
// (fetched with the bearer header, offered as a Blob download) and the generate form with progress.

import { api, el, Pager, query, row, say, when } from "./api.js";
import { handle, showDone } from "./forms.js";
import { start } from "./shell.js";

const PAGE_SIZE = 20;
const POLL_MS = 400;

/** A fresh key for one generate request (crypto.randomUUID needs a secure context; this does not). */
function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `dashboard-${[...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}

// A submission sent again unchanged (after a lost answer or an error) reuses its key, so the API
// replays the first campaign instead of generating a second one.
let pending = { body: null, key: null };

function keyFor(body) {
  const text = JSON.stringify(body);
  if (pending.body !== text) pending = { body: text, key: idempotencyKey() };
  return pending.key;
}

function against(value, limit) {
  return limit === null || limit === undefined ? `${value}` : `${value} / ${limit}`;
}

async function downloadCsv(campaign, button) {
  const alert = document.getElementById("list-alert");
  say(alert, "");
  button.disabled = true;
  try {
    const response = await api("GET", `/v1/campaigns/${encodeURIComponent(campaign.id)}/coupons?format=csv`, {
      raw: true,
      headers: { Accept: "text/csv" },
    });
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: `campaign-${campaign.prefix.replace(/[^A-Za-z0-9_-]/g, "") || campaign.id}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (error) {
    if (error.code === undefined) throw error;
    say(alert, error.message);
  } finally {
    button.disabled = false;
  }
}

function campaignRow(campaign) {
  const results = campaign.results;
  const button = el("button", { type: "button", class: "secondary", text: "Download CSV", "aria-label": `Download the codes of ${campaign.name} as CSV` });
  button.addEventListener("click", () => downloadCsv(campaign, button));
  const codes = campaign.generated < campaign.count ? `${campaign.generated} of ${campaign.count} (generating)` : `${campaign.count}`;
  return row([
    campaign.name,
    campaign.prefix,
    codes,
    against(results.redeemed, campaign.max_redemptions),
    against(results.discount_given, campaign.max_discount_total),
    results.budget_left ?? "no budget",
    when(campaign.created_at),
    button,
  ]);
}

async function loadPage(cursor) {
  const alert = document.getElementById("list-alert");
  say(alert, "");
  let page;
  try {
    page = await api("GET", `/v1/campaigns${query({ limit: PAGE_SIZE, cursor })}`);
  } catch (error) {
    if (error.code === undefined) throw error;
    say(alert, error.message);
    return null;
  }
  document.querySelector("#campaigns tbody").replaceChildren(...page.data.map(campaignRow));
  document.getElementById("list-empty").hidden = page.data.length > 0;
  return page.next_cursor;
}

/**
 * Follows a campaign being generated: the list shows it (generated < count) once its first chunk
 * is stored; until then the bar is indeterminate.
 */
function watch(body, startedAt, bar, label) {
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try {
      const page = await api("GET", `/v1/campaigns${query({ limit: 10 })}`);
      const mine = page.data.find(
        (c) => c.name === body.name && c.prefix === body.prefix && c.count === body.count && Date.parse(c.created_at) >= startedAt - 60_000,
      );
      if (mine && !stopped) {
        bar.max = mine.count;
        bar.value = mine.generated;
        label.textContent = `Generating: ${mine.generated} of ${mine.count} codes`;
      }
    } catch {
      // the next tick tries again; the POST's answer says how it ended
    }
    if (!stopped) setTimeout(tick, POLL_MS);
  };
  setTimeout(tick, POLL_MS);
  return () => {
    stopped = true;
  };
}

async function init() {
  const pager = new Pager(loadPage);
  const form = document.getElementById("generate-form");
  const progress = document.getElementById("generate-progress");
  const label = document.getElementById("generate-label");
  handle(form, async (body) => {
    const bar = document.getElementById("generate-bar");
    bar.removeAttribute("value"); // indeterminate until the list shows the campaign
    label.textContent = "Generating…";
    progress.hidden = false;
    const stop = watch(body, Date.now(), bar, label);
    try {
      const campaign = await api("POST", "/v1/campaigns", { body, headers: { "Idempotency-Key": keyFor(body) } });
      pending = { body: null, key: null };
      showDone(form, `Generated ${campaign.generated} codes for ${campaign.name}.`);
      form.reset();
      await pager.reset();
    } finally {
      stop();
      progress.hidden = true;
    }
  });
  await pager.reset();
}

start(init);
