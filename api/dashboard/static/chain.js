// The hash chain of a coupon's events, recomputed in the browser (DESIGN §4): for each event,
// canonical = JSON of {version, type, occurred_at, data} exactly as served, keys sorted at every
// depth, no spaces, non-ASCII unescaped; hash = sha256hex(prev_hash + canonical); the first
// prev_hash is 64 zeros. The same check as the README's check_chain.py, with Web Crypto.

export const GENESIS = "0".repeat(64);

function sorted(value) {
  if (Array.isArray(value)) return value.map(sorted);
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const key of Object.keys(value).sort()) out[key] = sorted(value[key]);
    return out;
  }
  return value;
}

/** The canonical JSON of an event: JSON.stringify writes no spaces and leaves non-ASCII as it is. */
export function canonical(event) {
  const { version, type, occurred_at: occurredAt, data } = event;
  return JSON.stringify(sorted({ version, type, occurred_at: occurredAt, data }));
}

export async function sha256hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * Checks events in version order: {ok: true, head, count} or {ok: false, version, reason}, naming
 * the first event not linked to the one before or whose hash does not recompute.
 */
export async function verifyChain(events) {
  let previous = GENESIS;
  for (const event of events) {
    if (event.prev_hash !== previous) return { ok: false, version: event.version, reason: "not linked to the one before" };
    const computed = await sha256hex(previous + canonical(event));
    if (computed !== event.hash) return { ok: false, version: event.version, reason: "altered" };
    previous = computed;
  }
  return { ok: true, head: previous, count: events.length };
}

/** Checks the events and says so in the badge element; answers the check's result. */
export async function checkAndShow(events, badge) {
  if (!globalThis.crypto?.subtle) {
    // Web Crypto's digest exists only in a secure context: https, or http on localhost/127.0.0.1.
    badge.classList.remove("verified", "broken");
    badge.textContent = "Chain not checked: this page is not served over https or from localhost, so the browser offers no SHA-256.";
    return { ok: null };
  }
  const result = await verifyChain(events);
  badge.classList.remove("verified", "broken");
  if (result.ok) {
    badge.classList.add("verified");
    badge.textContent = `Chain verified: ${result.count} events, head ${result.head}`;
  } else {
    badge.classList.add("broken");
    badge.textContent = `Chain broken at version ${result.version} (${result.reason})`;
  }
  return result;
}
