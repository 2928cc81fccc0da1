// The API from the browser: the secret key kept in this tab's sessionStorage (never localStorage,
// a cookie or a URL), sent as the bearer header on every call; errors in the API's one shape.

const KEY_NAME = "coupon-ledger.secret-key";
const unauthorizedHandlers = [];

export function currentKey() {
  return sessionStorage.getItem(KEY_NAME);
}

export function keepKey(key) {
  sessionStorage.setItem(KEY_NAME, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_NAME);
}

/** Called with the API's error when a call made with the kept key is answered 401. */
export function onUnauthorized(handler) {
  unauthorizedHandlers.push(handler);
}

/** An error answer of the API: its status and the fields of {"error": {code, message, details}}. */
export class ApiError extends Error {
  constructor(status, error) {
    super(error.message);
    this.status = status;
    this.code = error.code;
    this.details = error.details || {};
    this.requestId = error.request_id || null;
  }
}

async function errorOf(response) {
  try {
    const body = await response.json();
    if (body && body.error && typeof body.error.message === "string") return new ApiError(response.status, body.error);
  } catch {
    // not the API's error shape: described below
  }
  return new ApiError(response.status, {
    code: `HTTP_${response.status}`,
    message: `The server answered ${response.status} ${response.statusText}.`.replace(" .", "."),
    details: {},
  });
}

/**
 * Calls the API. `key` overrides the kept key (the sign-in check); `raw` answers the Response
 * itself (a CSV download). Throws ApiError for any error answer.
 */
export async function api(method, path, { body, headers = {}, key, raw = false } = {}) {
  const sent = { Accept: "application/json", ...headers, Authorization: `Bearer ${key ?? currentKey() ?? ""}` };
  const init = { method, headers: sent, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    sent["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (cause) {
    throw new ApiError(0, { code: "NETWORK", message: `The API could not be reached (${cause.message}).`, details: {} });
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && key === undefined) unauthorizedHandlers.forEach((handler) => handler(error));
    throw error;
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

/** A query string of the given parameters, leaving out empty ones. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** An element with attributes and children (strings become text nodes: never parsed as HTML). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A table row of cells (strings or nodes); the first is a row header. */
export function row(cells) {
  return el("tr", {}, cells.map((cell, index) => el(index === 0 ? "th" : "td", index === 0 ? { scope: "row" } : {}, cell)));
}

/** A UTC timestamp as served, shortened for reading: "2030-01-31 23:59:59". */
export function when(timestamp) {
  if (!timestamp) return "—";
  return timestamp.replace("T", " ").replace(/\.\d+/, "").replace("Z", "");
}

/** Shows a message in an alert or status element (empty clears it). */
export function say(element, message) {
  element.textContent = message || "";
}

/**
 * Previous/next paging over an endpoint's next_cursor, with a stack of the cursors behind, on the
 * buttons of the templates' pager macro (these ids unless others are given).
 */
export class Pager {
  constructor(load, { previous = "prev-page", page = "page-number", next = "next-page" } = {}) {
    this.previous = document.getElementById(previous);
    this.next = document.getElementById(next);
    this.label = document.getElementById(page);
    this.load = load; // async (cursor) => next_cursor
    this.behind = [];
    this.cursor = null;
    this.nextCursor = null;
    this.previous.addEventListener("click", () => this.back());
    this.next.addEventListener("click", () => this.forward());
  }

  async reset() {
    this.behind = [];
    this.cursor = null;
    await this.show();
  }

  async show() {
    this.previous.disabled = true;
    this.next.disabled = true;
    this.nextCursor = await this.load(this.cursor);
    this.previous.disabled = this.behind.length === 0;
    this.next.disabled = !this.nextCursor;
    if (this.label) this.label.textContent = `Page ${this.behind.length + 1}`;
  }

  async forward() {
    if (!this.nextCursor) return;
    this.behind.push(this.cursor);
    this.cursor = this.nextCursor;
    await this.show();
  }

  async back() {
    if (this.behind.length === 0) return;
    this.cursor = this.behind.pop();
    await this.show();
  }
}
