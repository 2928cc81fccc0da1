// Forms: their values as an API body, and the API's errors shown as it words them, next to the
// field they name (aria-invalid, aria-describedby) or in the form's alert.

import { el } from "./api.js";

/** The ISO timestamp (UTC) of a datetime-local value, read in the browser's zone. */
export function isoOf(localValue) {
  const date = new Date(localValue);
  return Number.isNaN(date.getTime()) ? localValue : date.toISOString();
}

/** A served UTC timestamp as a datetime-local value in the browser's zone. */
export function localOf(timestamp) {
  if (!timestamp) return "";
  const date = new Date(timestamp);
  if (Number.isNaN(date.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** One control's value as the API takes it; undefined when empty (or null with `emptyIsNull`). */
export function valueOf(control, emptyIsNull = false) {
  const kind = control.dataset.kind;
  if (kind === "boolean") return control.checked;
  const text = control.value.trim();
  if (text === "") return emptyIsNull ? null : undefined;
  if (kind === "integer") return /^-?\d+$/.test(text) ? Number(text) : text; // anything else: the API words it
  if (kind === "time") return isoOf(text);
  return text;
}

/** Sets body[a][b] for a dotted name "a.b". */
export function put(body, name, value) {
  const parts = name.split(".");
  let target = body;
  for (const part of parts.slice(0, -1)) target = target[part] ??= {};
  target[parts[parts.length - 1]] = value;
}

/** The body of a form's named controls; empty ones left out; checkboxes sharing a name make a list. */
export function bodyOf(form) {
  const body = {};
  const lists = {};
  for (const control of form.elements) {
    if (!control.name) continue;
    if (control.type === "checkbox" && !control.dataset.kind) {
      (lists[control.name] ??= []);
      if (control.checked) lists[control.name].push(control.value);
      continue;
    }
    const value = valueOf(control);
    if (value !== undefined) put(body, control.name, value);
  }
  for (const [name, values] of Object.entries(lists)) put(body, name, values);
  return body;
}

function alertOf(form) {
  return form.querySelector("[data-form-alert]");
}

function statusOf(form) {
  return form.querySelector("[data-form-status]");
}

/** Removes the errors shown on a form and its messages. */
export function clearErrors(form) {
  for (const message of form.querySelectorAll(".field-error")) message.remove();
  for (const control of form.querySelectorAll("[aria-invalid]")) {
    control.removeAttribute("aria-invalid");
    const ids = (control.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && !id.endsWith("-error"));
    if (ids.length) control.setAttribute("aria-describedby", ids.join(" "));
    else control.removeAttribute("aria-describedby");
  }
  if (alertOf(form)) alertOf(form).textContent = "";
  if (statusOf(form)) statusOf(form).textContent = "";
}

/** The control (or fieldset) a field of the API names: "coupon.max_uses", "events.0", "discount_value". */
function targetOf(form, field) {
  const parts = String(field).split(".");
  for (let n = parts.length; n > 0; n -= 1) {
    const name = parts.slice(0, n).join(".");
    const found = form.querySelector(`[data-field="${CSS.escape(name)}"]`) || form.elements.namedItem(name);
    if (found) return found instanceof RadioNodeList ? found[0] : found;
  }
  return null;
}

function markField(target, message) {
  const id = `${target.id || target.name}-error`;
  let note = document.getElementById(id);
  if (!note) {
    note = el("p", { id, class: "field-error" });
    const holder = target.tagName === "FIELDSET" ? target : target.closest(".field") || target.parentElement;
    holder.append(note);
  }
  note.textContent = note.textContent ? `${note.textContent} ${message}` : message;
  const controls = target.tagName === "FIELDSET" ? [...target.querySelectorAll("input, select, textarea")] : [target];
  for (const control of controls) {
    control.setAttribute("aria-invalid", "true");
    const ids = new Set((control.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
    ids.add(id);
    control.setAttribute("aria-describedby", [...ids].join(" "));
  }
  return controls[0];
}

/**
 * Shows an API error on a form: each VALIDATION_FAILED item next to its field, another error's
 * message at the field its details name (details.field, or a detail named like a field), and the
 * error's message in the form's alert. Focuses the first field marked, else the alert.
 */
export function showError(form, error) {
  clearErrors(form);
  const marked = [];
  const errors = error.code === "VALIDATION_FAILED" && Array.isArray(error.details.errors) ? error.details.errors : [];
  const unplaced = [];
  for (const item of errors) {
    const target = targetOf(form, item.field);
    if (target) marked.push(markField(target, item.message));
    else unplaced.push(`${item.field}: ${item.message}`);
  }
  if (errors.length === 0) {
    const named = typeof error.details.field === "string" ? [error.details.field] : Object.keys(error.details);
    const target = named.map((field) => targetOf(form, field)).find(Boolean);
    if (target) marked.push(markField(target, error.message));
  }
  const alert = alertOf(form);
  if (alert) alert.textContent = [error.message, ...unplaced].join(" ");
  if (marked.length) marked[0].focus();
  else if (alert) alert.focus?.();
}

/** Shows a success message in a form's status element. */
export function showDone(form, message) {
  clearErrors(form);
  statusOf(form).textContent = message;
}

/**
 * Runs `submit(body)` when the form is sent, with its submit button disabled meanwhile, and shows
 * an ApiError it throws on the form.
 */
export function handle(form, submit) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector('[type="submit"]');
    button.disabled = true;
    clearErrors(form);
    try {
      await submit(bodyOf(form));
    } catch (error) {
      if (error.code === undefined) throw error;
      showError(form, error);
    } finally {
      button.disabled = false;
      // Disabling took the focus away: give it back, so a keyboard user stays where they were.
      if (document.activeElement === document.body) button.focus();
    }
  });
}
