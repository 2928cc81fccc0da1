"""The dashboard's browser tests: the real app served by uvicorn in a thread, Debian's Chromium
driven by Playwright (never a downloaded browser), and screenshots at desktop and phone width."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".ci" / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def chromium_or_skip() -> str:
    """The Chromium to drive; without one the test skips, or fails under COUPON_LEDGER_REQUIRE_BROWSER=1."""
    if os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = f"no Chromium at {CHROMIUM}: install Debian's with `apt-get install chromium`"
    if os.environ.get("COUPON_LEDGER_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " (COUPON_LEDGER_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    app: FastAPI
    url: str


@contextmanager
def serving(app: FastAPI) -> Iterator[Served]:
    """The app served over real HTTP on a free loopback port, its lifespan run, until the block ends."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="dashboard-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.05)
    try:
        yield Served(app, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def screenshot(page: Page, name: str) -> None:
    """The page now, full length, at desktop and at phone width (then back to desktop)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


# Every element with its own visible text whose color against its effective background (the first
# opaque background up its ancestors) is below 4.5:1 (WCAG 2 AA for normal text). Disabled controls
# are exempt, as WCAG exempts them.
LOW_CONTRAST_JS = """() => {
  const channel = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const parse = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const background = (node) => {
    for (let at = node; at; at = at.parentElement) {
      const rgba = parse(getComputedStyle(at).backgroundColor);
      if (rgba.length === 3 || (rgba.length === 4 && rgba[3] > 0.5)) return rgba.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const found = [];
  for (const node of document.querySelectorAll("body *")) {
    const own = [...node.childNodes].some((c) => c.nodeType === Node.TEXT_NODE && c.textContent.trim());
    if (!own || node.closest("[disabled], [hidden], svg") || !node.checkVisibility()) continue;
    const style = getComputedStyle(node);
    if (Number(style.opacity) < 1) continue;
    const [a, b] = [luminance(parse(style.color).slice(0, 3)), luminance(background(node))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) found.push(`${node.tagName} "${node.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}:1`);
  }
  return found;
}"""


def low_contrast(page: Page) -> list[str]:
    """The visible texts of the page with a contrast under 4.5:1 against their background."""
    result: list[str] = page.evaluate(LOW_CONTRAST_JS)
    return result
