// The layout's part of every page: sign in with the secret key, sign out, and back to sign-in
// when the API answers 401; then the page's own script runs.

import { api, currentKey, forgetKey, keepKey, onUnauthorized, say } from "./api.js";

// A call only a secret key may make: a publishable key is 403 FORBIDDEN, an unknown key 401.
const CHECK = "/v1/webhooks/endpoints?limit=1";

function showSignIn(message) {
  document.getElementById("app").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("sign-in").hidden = false;
  say(document.getElementById("sign-in-alert"), message);
  document.getElementById("secret-key").focus();
}

function showApp() {
  document.getElementById("sign-in").hidden = true;
  document.getElementById("app").hidden = false;
  document.getElementById("sign-out").hidden = false;
}

/** Starts the page: `init` runs once signed in (at once if this tab has a key). */
export function start(init) {
  let started = false;
  const run = async () => {
    showApp();
    if (started) return;
    started = true;
    try {
      await init();
    } catch (error) {
      if (error.code === undefined) throw error;
      if (error.status !== 401) say(document.getElementById("page-alert"), error.message);
    }
  };
  onUnauthorized((error) => {
    started = false; // signed in again, the page starts afresh
    forgetKey();
    showSignIn(error.message);
  });
  document.getElementById("sign-out").addEventListener("click", () => {
    forgetKey();
    window.location.assign("/dashboard");
  });
  document.getElementById("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("secret-key");
    const key = input.value.trim();
    const alert = document.getElementById("sign-in-alert");
    say(alert, "");
    if (!key) {
      say(alert, "Enter your secret key.");
      input.focus();
      return;
    }
    try {
      await api("GET", CHECK, { key });
    } catch (error) {
      if (error.code === undefined) throw error;
      say(alert, error.message);
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    input.removeAttribute("aria-invalid");
    input.value = "";
    keepKey(key);
    await run();
  });
  if (currentKey()) run();
  else showSignIn("");
}
