// The webhooks page: endpoints (list, add, delete) and deliveries (list by status, resend).

import { api, el, Pager, query, row, say, when } from "./api.js";
import { handle, showDone } from "./forms.js";
import { start } from "./shell.js";

const PAGE_SIZE = 20;
const endpoints = new Map(); // id -> url, to name a delivery's endpoint
let endpointsCursor = null;

function endpointRow(endpoint) {
  const cells = [
    endpoint.url,
    endpoint.events.join(", "),
    endpoint.description || "—",
    when(endpoint.created_at),
    endpoint.disabled_at ? `deleted ${when(endpoint.disabled_at)}` : "active",
  ];
  if (endpoint.disabled_at) return row([...cells, "—"]);
  const button = el("button", { type: "button", class: "danger", text: "Delete", "aria-label": `Delete the endpoint ${endpoint.url}` });
  button.addEventListener("click", async () => {
    const alert = document.getElementById("endpoints-alert");
    say(alert, "");
    try {
      await api("DELETE", `/v1/webhooks/endpoints/${encodeURIComponent(endpoint.id)}`);
      say(document.getElementById("endpoints-status"), `Deleted ${endpoint.url}.`);
      await loadEndpoints(true);
    } catch (error) {
      if (error.code === undefined) throw error;
      say(alert, error.message);
    }
  });
  return row([...cells, button]);
}

async function loadEndpoints(fromStart) {
  if (fromStart) endpointsCursor = null;
  const page = await api("GET", `/v1/webhooks/endpoints${query({ limit: PAGE_SIZE, cursor: endpointsCursor })}`);
  const body = document.querySelector("#endpoints tbody");
  if (fromStart) {
    body.replaceChildren();
    endpoints.clear();
  }
  for (const endpoint of page.data) endpoints.set(endpoint.id, endpoint.url);
  body.append(...page.data.map(endpointRow));
  endpointsCursor = page.next_cursor;
  document.getElementById("endpoints-more").hidden = !endpointsCursor;
  document.getElementById("endpoints-empty").hidden = body.children.length > 0;
}

function deliveryRow(delivery, pager) {
  const last = [delivery.last_status_code, delivery.last_error].filter((part) => part !== null && part !== undefined && part !== "").join(" ");
  const button = el("button", { type: "button", class: "secondary", text: "Resend", "aria-label": `Resend ${delivery.event_type} ${delivery.event_id}` });
  button.addEventListener("click", async () => {
    const alert = document.getElementById("deliveries-alert");
    say(alert, "");
    button.disabled = true;
    try {
      await api("POST", `/v1/webhooks/deliveries/${encodeURIComponent(delivery.id)}/resend`);
      say(document.getElementById("deliveries-status"), `Queued ${delivery.event_type} again.`);
      await pager.show();
    } catch (error) {
      if (error.code === undefined) throw error;
      say(alert, error.message);
    } finally {
      button.disabled = false;
    }
  });
  return row([
    delivery.event_type,
    endpoints.get(delivery.endpoint_id) ?? delivery.endpoint_id,
    el("span", { class: `pill ${delivery.status}`, text: delivery.status }),
    delivery.attempts,
    last || "—",
    when(delivery.next_attempt_at),
    when(delivery.delivered_at),
    button,
  ]);
}

async function init() {
  const filters = { status: "" };
  const pager = new Pager(
    async (cursor) => {
      const alert = document.getElementById("deliveries-alert");
      say(alert, "");
      let page;
      try {
        page = await api("GET", `/v1/webhooks/deliveries${query({ ...filters, limit: PAGE_SIZE, cursor })}`);
      } catch (error) {
        if (error.code === undefined) throw error;
        say(alert, error.message);
        return null;
      }
      document.querySelector("#deliveries tbody").replaceChildren(...page.data.map((d) => deliveryRow(d, pager)));
      document.getElementById("deliveries-empty").hidden = page.data.length > 0;
      return page.next_cursor;
    },
    { previous: "d-prev", page: "d-page", next: "d-next" },
  );
  document.getElementById("delivery-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    filters.status = document.getElementById("d-status").value;
    pager.reset();
  });
  document.getElementById("endpoints-more").addEventListener("click", () => loadEndpoints(false));

  const form = document.getElementById("endpoint-form");
  handle(form, async (body) => {
    if (!body.description) delete body.description;
    const created = await api("POST", "/v1/webhooks/endpoints", { body });
    form.reset();
    showDone(form, `Added ${created.url}. Its signing secret, shown only now: ${created.secret}`);
    await loadEndpoints(true);
  });

  await loadEndpoints(true);
  await pager.reset();
}

start(init);
