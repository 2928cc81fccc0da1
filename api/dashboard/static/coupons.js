// The coupons page: the list (filters, sorting, paging over the API's cursors) and the create form.

import { api, el, Pager, query, row, say, when } from "./api.js";
import { handle, showDone } from "./forms.js";
import { start } from "./shell.js";

const PAGE_SIZE = 20;
const state = { status: "", campaign_id: "", sort: "code" };

function usesOf(coupon) {
  return `${coupon.uses_count} / ${coupon.max_uses ?? "∞"}`;
}

function windowOf(coupon) {
  if (!coupon.starts_at && !coupon.expires_at) return "always";
  return `${when(coupon.starts_at)} – ${when(coupon.expires_at)}`;
}

function couponRow(coupon) {
  const link = el("a", { href: `/dashboard/coupons/${encodeURIComponent(coupon.code)}`, text: coupon.code });
  const campaign = coupon.campaign_id
    ? el("a", { href: "/dashboard/campaigns", title: coupon.campaign_id, text: coupon.campaign_id.slice(0, 8) })
    : "—";
  return row([
    link,
    el("span", { class: `pill ${coupon.status}`, text: coupon.status }),
    usesOf(coupon),
    coupon.holds ?? "—",
    windowOf(coupon),
    when(coupon.created_at),
    campaign,
  ]);
}

async function loadPage(cursor) {
  const alert = document.getElementById("list-alert");
  say(alert, "");
  const params = { ...state, limit: PAGE_SIZE, cursor };
  let page;
  try {
    page = await api("GET", `/v1/coupons${query(params)}`);
  } catch (error) {
    if (error.code === undefined) throw error;
    say(alert, error.message);
    return null;
  }
  const body = document.querySelector("#coupons tbody");
  body.replaceChildren(...page.data.map(couponRow));
  document.getElementById("list-empty").hidden = page.data.length > 0;
  return page.next_cursor;
}

function showSort() {
  const [descending, field] = state.sort.startsWith("-") ? [true, state.sort.slice(1)] : [false, state.sort];
  for (const header of document.querySelectorAll("#coupons th[data-sort]")) {
    const button = header.querySelector("button");
    if (header.dataset.sort === field) {
      header.setAttribute("aria-sort", descending ? "descending" : "ascending");
      button.dataset.direction = descending ? "descending" : "ascending";
    } else {
      header.removeAttribute("aria-sort");
      delete button.dataset.direction;
    }
  }
  const name = document.querySelector(`#coupons th[data-sort="${field}"] button`).textContent;
  document.getElementById("sort-caption").textContent = `${name.toLowerCase()}, ${descending ? "descending" : "ascending"}`;
}

async function init() {
  const pager = new Pager(loadPage);
  for (const header of document.querySelectorAll("#coupons th[data-sort]")) {
    header.querySelector("button").addEventListener("click", () => {
      const field = header.dataset.sort;
      state.sort = state.sort === field ? `-${field}` : field;
      showSort();
      pager.reset();
    });
  }
  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.status = document.getElementById("filter-status").value;
    state.campaign_id = document.getElementById("filter-campaign").value.trim();
    pager.reset();
  });
  document.getElementById("refresh").addEventListener("click", () => pager.show());

  const form = document.getElementById("create-form");
  handle(form, async (body) => {
    const coupon = await api("POST", "/v1/coupons", { body });
    form.reset();
    showDone(form, `Created ${coupon.code} (${coupon.status}).`);
    await pager.show();
  });

  const archived = new URLSearchParams(window.location.search).get("archived");
  if (archived) say(document.getElementById("list-status"), `Archived ${archived}: its history is kept on its page's address.`);
  showSort();
  await pager.reset();
}

start(init);
