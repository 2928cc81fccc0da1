// A coupon's page: its state now, the actions on it, its timeline (newest first) with the hash
// chain checked in the browser, its state at any version, and its daily chart.

import { api, el, query, row, say, when } from "./api.js";
import { checkAndShow } from "./chain.js";
import { showChart } from "./chart.js";
import { handle, localOf, showDone, valueOf } from "./forms.js";
import { start } from "./shell.js";

const code = decodeURIComponent(window.location.pathname.split("/").pop());
const path = `/v1/coupons/${encodeURIComponent(code)}`;
let current = null;

const FACTS = [
  ["status", "Status"],
  ["uses", "Uses / limit"],
  ["holds", "Holds"],
  ["discount", "Discount"],
  ["min_order_value", "Min order value"],
  ["max_discount_amount", "Max discount amount"],
  ["max_uses_per_customer", "Max uses per customer"],
  ["starts_at", "Starts at (UTC)"],
  ["expires_at", "Expires at (UTC)"],
  ["is_active", "Active"],
  ["public", "Public"],
  ["campaign_id", "Campaign"],
  ["created_at", "Created (UTC)"],
];

function factOf(coupon, name) {
  switch (name) {
    case "uses":
      return `${coupon.uses_count} / ${coupon.max_uses ?? "∞"}`;
    case "discount":
      return coupon.discount_type === "free_shipping"
        ? "free shipping"
        : `${coupon.discount_value}${coupon.discount_type === "percentage" ? " %" : " off"}`;
    case "starts_at":
    case "expires_at":
    case "created_at":
      return when(coupon[name]);
    case "is_active":
    case "public":
      return coupon[name] ? "yes" : "no";
    default:
      return coupon[name] ?? "—";
  }
}

function showFacts(list, coupon) {
  list.replaceChildren(
    ...FACTS.filter(([name]) => name !== "holds" || "holds" in coupon).flatMap(([name, label]) => [
      el("dt", { text: label }),
      el("dd", { "data-fact": name, text: factOf(coupon, name) }),
    ]),
  );
}

function fillPatchForm(coupon) {
  const form = document.getElementById("patch-form");
  for (const control of form.elements) {
    if (!control.name) continue;
    const value = coupon[control.name];
    if (control.dataset.kind === "boolean") control.checked = Boolean(value);
    else if (control.dataset.kind === "time") control.value = localOf(value);
    else control.value = value ?? "";
    control.dataset.was = control.dataset.kind === "boolean" ? String(control.checked) : control.value;
  }
}

async function loadCoupon() {
  current = await api("GET", path);
  document.getElementById("coupon-code").textContent = current.code;
  document.title = `${current.code} · coupon-ledger dashboard`;
  showFacts(document.getElementById("current-state"), current);
  fillPatchForm(current);
}

function actorOf(data) {
  const actor = data.actor;
  if (!actor) return "—";
  const who = [actor.kind, actor.key_id].filter(Boolean).join(" ");
  return actor.request_id ? el("span", {}, who, el("br"), el("small", { text: `request ${actor.request_id}` })) : who;
}

function amountsOf(data) {
  const parts = [];
  if (data.original_subtotal) parts.push(`subtotal ${data.original_subtotal}`);
  if (data.discount_amount) parts.push(`discount ${data.discount_amount}`);
  if (data.final_total) parts.push(`total ${data.final_total}`);
  return parts.length ? parts.join(", ") : "—";
}

async function allEvents() {
  const events = [];
  let cursor = null;
  do {
    const page = await api("GET", `${path}/events${query({ limit: 500, cursor })}`);
    events.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return events;
}

async function showThen(version) {
  const section = document.getElementById("then");
  const response = await api("GET", `${path}/state${query({ version })}`, { raw: true });
  const coupon = await response.json();
  document.getElementById("then-version").textContent = String(version);
  const archived = response.headers.get("coupon-archived") === "true" ? " (archived by then)" : "";
  document.getElementById("then-at").textContent = `At ${when(response.headers.get("coupon-state-at"))} UTC${archived}.`;
  showFacts(document.getElementById("then-state"), coupon);
  section.hidden = false;
  document.getElementById("then-title").focus();
}

async function loadTimeline() {
  const events = await allEvents();
  await checkAndShow(events, document.getElementById("chain-badge"));
  const rows = [...events].reverse().map((event) => {
    const button = el("button", {
      type: "button",
      class: "link",
      "aria-label": `Show the coupon as it was after version ${event.version}`,
      text: `v${event.version}`,
      onclick: () => showThen(event.version).catch((error) => say(document.getElementById("action-alert"), error.message)),
    });
    return row([button, event.type, when(event.occurred_at), actorOf(event.data), amountsOf(event.data)]);
  });
  document.querySelector("#timeline tbody").replaceChildren(...rows);
}

async function loadChart() {
  await showChart(code, document.getElementById("chart"), document.getElementById("chart-summary"), document.getElementById("chart-table"));
}

async function refresh() {
  try {
    await loadCoupon();
  } catch (error) {
    if (error.status !== 404) throw error;
    // Archived (or never made): no current state, but a history stays readable to its auditor.
    document.getElementById("coupon-code").textContent = code;
    say(document.getElementById("page-alert"), `${error.message} Its history, if it has one, is below.`);
    for (const id of ["current-state", "patch-form"]) document.getElementById(id).closest("section").hidden = true;
  }
  await Promise.all([loadTimeline(), loadChart()]);
}

function action(button, run, done) {
  button.addEventListener("click", async () => {
    const alert = document.getElementById("action-alert");
    const status = document.getElementById("action-status");
    say(alert, "");
    say(status, "");
    button.disabled = true;
    try {
      await run();
      say(status, done());
      await refresh();
    } catch (error) {
      if (error.code === undefined) throw error;
      say(alert, error.message);
    } finally {
      button.disabled = false;
      // Disabling took the focus away: give it back, so a keyboard user stays where they were.
      if (document.activeElement === document.body) button.focus();
    }
  });
}

async function init() {
  action(document.getElementById("deactivate"), () => api("POST", `${path}/deactivate`), () => `${code} deactivated.`);
  action(document.getElementById("activate"), () => api("POST", `${path}/activate`), () => `${code} activated.`);
  const confirm = document.getElementById("archive-confirm");
  document.getElementById("archive").addEventListener("click", () => {
    confirm.hidden = false;
    document.getElementById("archive-no").focus();
  });
  document.getElementById("archive-no").addEventListener("click", () => {
    confirm.hidden = true;
    document.getElementById("archive").focus();
  });
  document.getElementById("archive-yes").addEventListener("click", async () => {
    try {
      await api("DELETE", path);
    } catch (error) {
      if (error.code === undefined) throw error;
      say(document.getElementById("action-alert"), error.message);
      return;
    }
    window.location.assign(`/dashboard${query({ archived: code })}`);
  });

  const form = document.getElementById("patch-form");
  handle(form, async () => {
    const body = {};
    for (const control of form.elements) {
      if (!control.name) continue;
      const now = control.dataset.kind === "boolean" ? String(control.checked) : control.value;
      if (now !== control.dataset.was) body[control.name] = valueOf(control, true);
    }
    if (Object.keys(body).length === 0) {
      showDone(form, "Nothing changed.");
      return;
    }
    await api("PATCH", path, { body });
    showDone(form, `Saved: ${Object.keys(body).join(", ")}.`);
    await refresh();
  });

  await refresh();
}

start(init);
