"""The dashboard in a real browser: Debian's Chromium driven by Playwright against the real app
(uvicorn on a loopback port, PostgreSQL behind it). Each step is checked on what the user sees;
each step's page is kept as a screenshot at desktop and phone width (.ci/artifacts/screenshots)."""

from __future__ import annotations

import hashlib
import json
import re
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright

from api.app import create_app
from api.dashboard.routes import CONTENT_SECURITY_POLICY
from api.settings import Settings
from tests.support import browser as browser_support
from tests.support.browser import (
    CHROMIUM_ARGS,
    DESKTOP,
    ROOT,
    Served,
    chromium_or_skip,
    low_contrast,
    screenshot,
    serving,
)

TIMEOUT_MS = 15_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def served(e2e_database_url: str) -> Iterator[Served]:
    app = create_app(Settings(database_url=e2e_database_url, access_log=False))
    with serving(app) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_or_skip()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Retailer:
    """A fresh retailer of the served app, with both its keys and an HTTP client on its secret key."""

    def __init__(self, served: Served, name: str) -> None:
        created = served.app.state.services.retailers.create(name)
        self.secret_key: str = created.api_key
        self.publishable_key: str = created.publishable_key
        self.http = httpx.Client(
            base_url=served.url, headers={"Authorization": f"Bearer {self.secret_key}"}, timeout=30
        )

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)


@pytest.fixture
def retailer(served: Served, request: pytest.FixtureRequest) -> Iterator[Retailer]:
    made = Retailer(served, f"dash-{request.node.name}-{id(request)}")
    yield made
    made.http.close()


@pytest.fixture
def page(browser: Browser, served: Served) -> Iterator[Page]:
    """A new browser tab (a fresh context: empty storage); fails the test on a script error or a
    Content-Security-Policy refusal."""
    context = browser.new_context(viewport=DESKTOP, base_url=served.url, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(f"console: {message.text}")  # a CSP refusal shows here

    tab.on("console", on_console)
    yield tab
    context.close()
    assert problems == []


def sign_in(page: Page, key: str, *, accepted: bool = True) -> None:
    """Signs in on the coupons page; with ``accepted``, waits until the dashboard shows (the key kept)."""
    page.goto("/dashboard")
    page.get_by_label("Secret key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    if accepted:
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def coupon_row(page: Page, code: str) -> Any:
    return page.locator("#coupons tbody tr").filter(has=page.get_by_role("link", name=code, exact=True))


def test_a_retailer_creates_uses_audits_and_deactivates_a_coupon(page: Page, retailer: Retailer) -> None:
    page.goto("/dashboard")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "01-sign-in")

    sign_in(page, retailer.secret_key)
    expect(page.get_by_role("heading", name="Coupons", exact=True)).to_be_visible()
    expect(page.get_by_text("No coupons match.")).to_be_visible()
    # The key is in this tab's session storage only: no cookie, nothing in local storage or the URL.
    assert page.evaluate("sessionStorage.getItem('coupon-ledger.secret-key')") == retailer.secret_key
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []
    assert retailer.secret_key not in page.url
    screenshot(page, "02-signed-in")

    # A bad value: the API's own words, at the field, which is marked invalid and focused.
    bad = {"code": "spring10", "discount_type": "percentage", "discount_value": "5.001", "max_uses": 100}
    refused = retailer.call("POST", "/v1/coupons", json=bad)
    assert refused.status_code == 422
    [problem] = refused.json()["error"]["details"]["errors"]
    assert problem["field"] == "discount_value"
    page.get_by_label("Code").fill("spring10")
    page.get_by_label("Discount type").select_option("percentage")
    page.get_by_label("Value", exact=True).fill("5.001")
    page.get_by_label("Max uses", exact=True).fill("100")
    page.get_by_role("button", name="Create coupon").click()
    value = page.get_by_label("Value", exact=True)
    expect(value).to_have_attribute("aria-invalid", "true")
    expect(value).to_have_accessible_description(problem["message"])
    expect(value).to_be_focused()
    expect(page.locator("#create-form [role=alert]")).to_have_text(refused.json()["error"]["message"])
    assert low_contrast(page) == []
    screenshot(page, "03-create-refused")

    # Made properly, it is listed with no use yet.
    value.fill("10")
    page.get_by_role("button", name="Create coupon").click()
    expect(page.locator("#create-form [role=status]")).to_have_text("Created SPRING10 (active).")
    expect(value).not_to_have_attribute("aria-invalid", "true")
    listed = coupon_row(page, "SPRING10")
    expect(listed.locator("td").nth(0)).to_have_text("active")
    expect(listed.locator("td").nth(1)).to_have_text("0 / 100")
    screenshot(page, "04-created-and-listed")

    # Its page before any use: the chart shows nothing yet.
    listed.get_by_role("link", name="SPRING10").click()
    expect(page.get_by_role("heading", name="Coupon SPRING10")).to_be_visible()
    expect(page.locator("#chart-summary")).to_contain_text("0 redemptions, 0.00 discount in total")
    expect(page.locator("#chart rect.bar")).to_have_count(0)

    # Used through the API: the list counts it, the chart draws it.
    applied = retailer.call("POST", "/v1/coupons/apply", json={"code": "SPRING10", "subtotal": "100.00"})
    assert applied.status_code == 201, applied.text
    page.get_by_role("link", name="All coupons").click()
    expect(coupon_row(page, "SPRING10").locator("td").nth(1)).to_have_text("1 / 100")
    screenshot(page, "05-used-once")
    page.get_by_role("link", name="SPRING10").click()
    expect(page.locator("#chart-summary")).to_contain_text("1 redemption, 10.00 discount in total")
    expect(page.locator("#chart rect.bar")).to_have_count(1)
    page.get_by_text("The figures as a table").click()
    expect(page.locator("#chart-table tbody tr")).to_have_count(1)
    expect(page.locator("#chart-table tbody tr td").nth(2)).to_have_text("10.00")

    # The timeline, newest first, and the chain checked in the browser up to the served head.
    events = retailer.call("GET", "/v1/coupons/SPRING10/events").json()["data"]
    head = events[-1]["hash"]
    expect(page.locator("#chain-badge")).to_have_text(f"Chain verified: 2 events, head {head}")
    timeline = page.locator("#timeline tbody tr")
    expect(timeline).to_have_count(2)
    expect(timeline.nth(0)).to_contain_text("Coupon.Redeemed")
    expect(timeline.nth(0)).to_contain_text("discount 10.00, total 90.00")
    expect(timeline.nth(0)).to_contain_text(f"secret_key {events[-1]['data']['actor']['key_id']}")
    expect(timeline.nth(1)).to_contain_text("Coupon.Created")
    assert low_contrast(page) == []
    screenshot(page, "06-timeline")

    # The coupon as it was after version 1: not yet used.
    page.get_by_role("button", name="Show the coupon as it was after version 1").click()
    expect(page.get_by_role("heading", name="As it was after version 1")).to_be_focused()
    expect(page.locator("#then-state [data-fact=uses]")).to_have_text("0 / 100")
    expect(page.locator("#current-state [data-fact=uses]")).to_have_text("1 / 100")
    screenshot(page, "07-state-then")

    # Deactivated: the page, the list and the API say inactive.
    page.get_by_role("button", name="Deactivate").click()
    expect(page.locator("#action-status")).to_have_text("SPRING10 deactivated.")
    expect(page.locator("#current-state [data-fact=status]")).to_have_text("inactive")
    expect(page.locator("#timeline tbody tr").nth(0)).to_contain_text("Coupon.Deactivated")
    expect(page.locator("#chain-badge")).to_contain_text("Chain verified: 3 events")
    screenshot(page, "08-deactivated")
    assert retailer.call("GET", "/v1/coupons/SPRING10").json()["status"] == "inactive"
    page.get_by_role("link", name="All coupons").click()
    expect(coupon_row(page, "SPRING10").locator("td").nth(0)).to_have_text("inactive")

    # Signing out forgets the key.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_publishable_or_unknown_key_is_refused_at_sign_in_in_the_apis_words(page: Page, retailer: Retailer) -> None:
    check = retailer.http.get(
        "/v1/webhooks/endpoints?limit=1", headers={"Authorization": f"Bearer {retailer.publishable_key}"}
    )
    assert check.status_code == 403 and check.json()["error"]["code"] == "FORBIDDEN"
    sign_in(page, retailer.publishable_key, accepted=False)
    alert = page.locator("#sign-in-alert")
    expect(alert).to_have_text(check.json()["error"]["message"])
    expect(page.get_by_label("Secret key")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    assert low_contrast(page) == []
    screenshot(page, "09-publishable-key-refused")

    page.get_by_label("Secret key").fill("cl_not-a-key-of-anyone")
    page.get_by_role("button", name="Sign in").click()
    expect(alert).to_have_text("The API key is not valid.")
    assert page.evaluate("sessionStorage.length") == 0


def test_a_tampered_event_is_caught_by_the_browsers_chain_check(page: Page, retailer: Retailer) -> None:
    assert retailer.call(
        "POST", "/v1/coupons", json={"code": "AUDIT1", "discount_type": "fixed", "discount_value": "5"}
    ).is_success
    assert retailer.call("POST", "/v1/coupons/apply", json={"code": "AUDIT1", "subtotal": "50.00"}).is_success
    sign_in(page, retailer.secret_key)
    page.goto("/dashboard/coupons/AUDIT1")
    expect(page.locator("#chain-badge")).to_contain_text("Chain verified: 2 events")

    events = retailer.call("GET", "/v1/coupons/AUDIT1/events").json()["data"]
    check = """async ([events, change]) => {
        const { checkAndShow } = await import("/dashboard/static/chain.js");
        const copy = structuredClone(events);
        change(copy);
        return checkAndShow(copy, document.getElementById("chain-badge"));
    }"""
    untouched = page.evaluate(check.replace("change(copy);", ""), [events, None])
    assert untouched == {"ok": True, "head": events[-1]["hash"], "count": 2}

    altered = page.evaluate(check.replace("change(copy);", 'copy[1].data.discount_amount = "0.01";'), [events, None])
    assert altered == {"ok": False, "version": 2, "reason": "altered"}
    expect(page.locator("#chain-badge")).to_have_text("Chain broken at version 2 (altered)")
    screenshot(page, "10-chain-broken")

    # The second event's hash recomputed over the altered data still does not link to the first's.
    unlinked = page.evaluate(check.replace("change(copy);", 'copy[0].hash = "f".repeat(64);'), [events, None])
    assert unlinked == {"ok": False, "version": 1, "reason": "altered"}
    dropped = page.evaluate(check.replace("change(copy);", "copy.splice(0, 1);"), [events, None])
    assert dropped == {"ok": False, "version": 2, "reason": "not linked to the one before"}
    expect(page.locator("#chain-badge")).to_have_text("Chain broken at version 2 (not linked to the one before)")


def test_the_browser_hashes_non_ascii_data_as_the_server_does(page: Page, retailer: Retailer) -> None:
    sign_in(page, retailer.secret_key)
    expect(page.get_by_role("heading", name="Coupons", exact=True)).to_be_visible()
    # An event as served, with non-ASCII text, nesting, null and quotes: hashed as check_chain.py would.
    event = {
        "version": 1,
        "type": "Coupon.Created",
        "occurred_at": "2026-12-05T07:30:16.169888Z",
        "data": {"z": 'straße ✓ "q" \\ \n', "a": {"y": [1, None, True], "b": "日本"}, "n": None},
    }
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256(("0" * 64 + canonical).encode()).hexdigest()
    got = page.evaluate(
        """async (event) => {
            const chain = await import("/dashboard/static/chain.js");
            return [chain.canonical(event), await chain.sha256hex(chain.GENESIS + chain.canonical(event))];
        }""",
        event,
    )
    assert got == [canonical, expected]


def test_every_dashboard_response_carries_the_security_headers(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as http:
        for path in (
            "/dashboard",
            "/dashboard/coupons/ANY",
            "/dashboard/campaigns",
            "/dashboard/webhooks",
            "/dashboard/static/api.js",
            "/dashboard/static/dashboard.css",
            "/dashboard/static/nope.js",
        ):
            response = http.get(path)
            assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
            assert response.headers["x-content-type-options"] == "nosniff", path
            assert response.headers["referrer-policy"] == "no-referrer", path
        missing = http.get("/dashboard/static/nope.js")
        assert missing.status_code == 404 and set(missing.json()["error"]) == {
            "code",
            "message",
            "details",
            "request_id",
        }
        page_html = http.get("/dashboard").text
        assert "<script>" not in page_html and " style=" not in page_html  # nothing inline the CSP would refuse
        assert "authorization" not in http.get("/dashboard").headers.get("set-cookie", "").lower()
        assert "set-cookie" not in http.get("/dashboard").headers
        # The API's own routes are left as they were.
        assert "content-security-policy" not in http.get("/healthz").headers


def test_the_dashboards_files_are_in_the_package_data() -> None:
    """An installed wheel serves the templates and static files: every one matches a package-data glob."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["api"]
    base = ROOT / "api"
    files = {p.relative_to(base) for p in (base / "dashboard").rglob("*") if p.is_file() and p.suffix != ".py"}
    files = {p for p in files if "__pycache__" not in p.parts}
    assert files
    unmatched = {str(p) for p in files if not any(Path(p).match(g) for g in globs)}
    assert unmatched == set()
    too_long = {str(p): n for p in files if p.suffix == ".js" and (n := len((base / p).read_text().splitlines())) > 600}
    assert too_long == {}
    assert re.search(r'"jinja2==\d', (ROOT / "pyproject.toml").read_text())


def test_without_chromium_the_browser_tests_skip_unless_ci_requires_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser_support, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("COUPON_LEDGER_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        chromium_or_skip()
    monkeypatch.setenv("COUPON_LEDGER_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"):
        chromium_or_skip()


def test_a_coupon_is_changed_and_archived_from_its_page(page: Page, retailer: Retailer) -> None:
    retailer.call("POST", "/v1/coupons", json={"code": "CHANGE1", "discount_type": "fixed", "discount_value": 5})
    sign_in(page, retailer.secret_key)
    page.goto("/dashboard/coupons/CHANGE1")
    expect(page.locator("#current-state [data-fact=uses]")).to_have_text("0 / ∞")

    patch = page.locator("#patch-form")
    patch.get_by_label("Min order value").fill("-1")
    patch.get_by_role("button", name="Save changes").click()
    refused = retailer.call("PATCH", "/v1/coupons/CHANGE1", json={"min_order_value": "-1"}).json()["error"]
    [problem] = refused["details"]["errors"]
    expect(patch.get_by_label("Min order value")).to_have_accessible_description(problem["message"])
    expect(patch.get_by_label("Min order value")).to_be_focused()

    patch.get_by_label("Min order value").fill("")
    patch.get_by_label("Max uses", exact=True).fill("3")
    patch.get_by_role("button", name="Save changes").click()
    expect(patch.locator("[role=status]")).to_have_text("Saved: max_uses.")
    expect(page.locator("#current-state [data-fact=uses]")).to_have_text("0 / 3")
    expect(page.locator("#timeline tbody tr").nth(0)).to_contain_text("Coupon.Updated")
    assert retailer.call("GET", "/v1/coupons/CHANGE1").json()["max_uses"] == 3

    page.get_by_role("button", name="Archive…").click()
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#archive-confirm")).to_be_hidden()
    page.get_by_role("button", name="Archive…").click()
    screenshot(page, "11-archive-confirm")
    page.get_by_role("button", name="Archive for good").click()
    expect(page.locator("#list-status")).to_contain_text("Archived CHANGE1")
    expect(page.get_by_text("No coupons match.")).to_be_visible()
    assert retailer.call("GET", "/v1/coupons/CHANGE1").status_code == 404

    # Its page still shows its history, the archiving last, the chain intact.
    page.goto("/dashboard/coupons/CHANGE1")
    expect(page.locator("#page-alert")).to_contain_text("Coupon CHANGE1 does not exist.")
    expect(page.locator("#timeline tbody tr").nth(0)).to_contain_text("Coupon.Archived")
    expect(page.locator("#chain-badge")).to_contain_text("Chain verified: 3 events")
    expect(page.get_by_role("button", name="Deactivate")).to_be_hidden()


def test_a_key_refused_later_returns_to_sign_in(page: Page, retailer: Retailer) -> None:
    sign_in(page, retailer.secret_key)
    expect(page.get_by_text("No coupons match.")).to_be_visible()
    page.evaluate("sessionStorage.setItem('coupon-ledger.secret-key', 'cl_revoked-meanwhile')")
    page.get_by_role("button", name="Refresh").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#sign-in-alert")).to_have_text("The API key is not valid.")
    assert page.evaluate("sessionStorage.length") == 0


def test_the_list_pages_through_the_apis_cursors_and_filters_by_status(page: Page, retailer: Retailer) -> None:
    for n in range(23):
        made = retailer.call(
            "POST", "/v1/coupons", json={"code": f"PAGE{n:02d}", "discount_type": "fixed", "discount_value": 1}
        )
        assert made.status_code == 201
    assert retailer.call("POST", "/v1/coupons/PAGE05/deactivate").is_success
    sign_in(page, retailer.secret_key)
    rows = page.locator("#coupons tbody tr")
    expect(rows).to_have_count(20)
    expect(rows.first.get_by_role("link")).to_have_text("PAGE00")
    page.get_by_role("button", name="Next page").click()
    expect(rows).to_have_count(3)
    expect(rows.first.get_by_role("link")).to_have_text("PAGE20")
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    expect(page.locator("#page-number")).to_have_text("Page 2")
    page.get_by_role("button", name="Previous page").click()
    expect(rows).to_have_count(20)
    expect(page.get_by_role("button", name="Previous page")).to_be_disabled()

    page.get_by_label("Status").select_option("inactive")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first.get_by_role("link")).to_have_text("PAGE05")


def test_a_campaign_is_generated_with_progress_listed_against_budget_and_exported(
    page: Page, retailer: Retailer
) -> None:
    sign_in(page, retailer.secret_key)
    page.get_by_role("link", name="Campaigns").click()
    expect(page.get_by_text("No campaigns yet.")).to_be_visible()
    form = page.locator("#generate-form")
    form.get_by_label("Name", exact=True).fill("Summer")
    form.get_by_label("Prefix", exact=True).fill("SUM-")
    form.get_by_label("Count", exact=True).fill("6000")
    form.get_by_label("Budget: max redemptions").fill("5")
    form.get_by_label("Budget: max discount total").fill("50.00")
    form.get_by_label("Discount type").select_option("fixed")
    form.get_by_label("Value", exact=True).fill("abc")
    form.get_by_role("button", name="Generate campaign").click()
    template_error = retailer.call(
        "POST",
        "/v1/campaigns",
        json={
            "name": "Summer",
            "prefix": "SUM-",
            "count": 1,
            "coupon": {"discount_type": "fixed", "discount_value": "abc"},
        },
    ).json()["error"]["details"]["errors"][0]
    assert template_error["field"] == "coupon.discount_value"
    expect(form.get_by_label("Value", exact=True)).to_have_accessible_description(template_error["message"])

    form.get_by_label("Value", exact=True).fill("4.00")
    form.get_by_role("button", name="Generate campaign").click()
    # While the codes are written the list shows the campaign with fewer generated than asked for.
    expect(page.locator("#generate-label")).to_contain_text(re.compile(r"Generating: \d+ of 6000 codes"))
    expect(form.locator("[role=status]")).to_have_text("Generated 6000 codes for Summer.")
    expect(page.locator("#generate-progress")).to_be_hidden()

    code = retailer.call("GET", "/v1/coupons", params={"limit": 1}).json()["data"][0]["code"]
    assert retailer.call("POST", "/v1/coupons/apply", json={"code": code, "subtotal": "20.00"}).status_code == 201
    page.reload()
    listed = page.locator("#campaigns tbody tr").filter(has_text="Summer")
    expect(listed.locator("td").nth(0)).to_have_text("SUM-")
    expect(listed.locator("td").nth(1)).to_have_text("6000")
    expect(listed.locator("td").nth(2)).to_have_text("1 / 5")
    expect(listed.locator("td").nth(3)).to_have_text("4.00 / 50.00")
    expect(listed.locator("td").nth(4)).to_have_text("46.00")
    assert low_contrast(page) == []
    screenshot(page, "12-campaigns")

    with page.expect_download() as download_info:
        listed.get_by_role("button", name="Download the codes of Summer as CSV").click()
    download = download_info.value
    assert download.suggested_filename == "campaign-SUM-.csv"
    lines = Path(download.path()).read_text().splitlines()
    assert lines[0] == "code,status,uses_count,max_uses"
    assert len(lines) == 6001 and f"{code},active,1," in lines


def test_webhook_endpoints_are_added_and_deleted_and_deliveries_resent(page: Page, retailer: Retailer) -> None:
    sign_in(page, retailer.secret_key)
    page.get_by_role("link", name="Webhooks").click()
    expect(page.get_by_text("No endpoints yet.")).to_be_visible()
    form = page.locator("#endpoint-form")
    form.get_by_label("URL").fill("ftp://example.com/hooks")
    form.get_by_role("button", name="Add endpoint").click()
    refused = retailer.call("POST", "/v1/webhooks/endpoints", json={"url": "ftp://example.com/hooks", "events": []})
    messages = {e["field"]: e["message"] for e in refused.json()["error"]["details"]["errors"]}
    expect(form.get_by_label("URL")).to_have_accessible_description(messages["url"])
    expect(form.get_by_label("coupon.created")).to_have_accessible_description(messages["events"])
    screenshot(page, "13-webhook-refused")

    url = "http://127.0.0.1:9/hooks"  # nothing listens: the delivery stays pending, retried later
    form.get_by_label("URL").fill(url)
    form.get_by_label("Description").fill("stock system")
    form.get_by_label("coupon.created").check()
    form.get_by_role("button", name="Add endpoint").click()
    expect(form.locator("[role=status]")).to_contain_text("Its signing secret, shown only now: whsec_")
    endpoint = page.locator("#endpoints tbody tr").filter(has_text=url)
    expect(endpoint.locator("td").nth(0)).to_have_text("coupon.created")
    expect(endpoint.locator("td").nth(3)).to_have_text("active")

    assert retailer.call("POST", "/v1/coupons", json={"code": "HOOKED", "discount_type": "fixed", "discount_value": 1})
    deadline = time.monotonic() + 20
    while not retailer.call("GET", "/v1/webhooks/deliveries").json()["data"]:
        assert time.monotonic() < deadline, "no delivery was made for coupon.created"
        time.sleep(0.1)
    page.reload()
    delivery = page.locator("#deliveries tbody tr").filter(has_text="coupon.created")
    expect(delivery.locator("td").nth(0)).to_have_text(url)
    expect(delivery.locator("td").nth(1)).to_have_text(re.compile("pending|failed"))
    delivery.get_by_role("button", name=re.compile("^Resend coupon.created")).click()
    expect(page.locator("#deliveries-status")).to_have_text("Queued coupon.created again.")
    expect(page.locator("#deliveries tbody tr").first.locator("td").nth(1)).to_have_text("pending")
    assert low_contrast(page) == []
    screenshot(page, "14-webhooks")

    endpoint.get_by_role("button", name=f"Delete the endpoint {url}").click()
    expect(page.locator("#endpoints-status")).to_have_text(f"Deleted {url}.")
    expect(page.locator("#endpoints tbody tr").filter(has_text=url).locator("td").nth(3)).to_contain_text("deleted")


def test_the_list_sorts_by_its_column_headers_and_shows_live_holds(page: Page, retailer: Retailer) -> None:
    uses = {"SORT-A": 2, "SORT-B": 0, "SORT-C": 3, "SORT-D": 1}
    for code, count in uses.items():
        made = retailer.call("POST", "/v1/coupons", json={"code": code, "discount_type": "fixed", "discount_value": 1})
        assert made.status_code == 201
        for _ in range(count):
            assert retailer.call("POST", "/v1/coupons/apply", json={"code": code, "subtotal": "10.00"}).is_success
    held = retailer.call("POST", "/v1/coupons/reserve", json={"code": "SORT-B", "subtotal": "10.00"})
    assert held.status_code == 201, held.text
    sign_in(page, retailer.secret_key)
    links = page.locator("#coupons tbody tr th a")
    expect(links).to_have_text(["SORT-A", "SORT-B", "SORT-C", "SORT-D"])
    expect(page.locator("#coupons th").filter(has_text="Code")).to_have_attribute("aria-sort", "ascending")
    expect(coupon_row(page, "SORT-B").locator("td").nth(2)).to_have_text("1")  # the live hold

    uses_header = page.locator("#coupons th").filter(has_text="Uses / limit")
    uses_header.get_by_role("button").click()
    expect(uses_header).to_have_attribute("aria-sort", "ascending")
    expect(page.locator("#coupons th").filter(has_text="Code")).not_to_have_attribute("aria-sort", re.compile("."))
    expect(links).to_have_text(["SORT-B", "SORT-D", "SORT-A", "SORT-C"])
    uses_header.get_by_role("button").press("Enter")  # by keyboard too
    expect(uses_header).to_have_attribute("aria-sort", "descending")
    expect(links).to_have_text(["SORT-C", "SORT-A", "SORT-D", "SORT-B"])
    screenshot(page, "15-sorted-by-uses")

    created_header = page.locator("#coupons th").filter(has_text="Created")
    created_header.get_by_role("button").click()
    created_header.get_by_role("button").click()
    expect(created_header).to_have_attribute("aria-sort", "descending")
    expect(links).to_have_text(["SORT-D", "SORT-C", "SORT-B", "SORT-A"])


def test_generating_again_after_a_lost_answer_replays_the_campaign_instead_of_making_a_second(
    page: Page, retailer: Retailer
) -> None:
    sign_in(page, retailer.secret_key)
    page.goto("/dashboard/campaigns")
    lost: list[str] = []

    def lose_first_answer(route: Route) -> None:
        if route.request.method == "POST" and not lost:
            answer = route.fetch()  # the server makes the campaign; the browser never hears of it
            lost.append(answer.text())
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/v1/campaigns", lose_first_answer)
    form = page.locator("#generate-form")
    form.get_by_label("Name", exact=True).fill("Retry")
    form.get_by_label("Prefix", exact=True).fill("RE-")
    form.get_by_label("Count", exact=True).fill("3")
    form.get_by_label("Discount type").select_option("fixed")
    form.get_by_label("Value", exact=True).fill("2")
    form.get_by_role("button", name="Generate campaign").click()
    expect(form.locator("[role=alert]")).to_contain_text("could not be reached")
    form.get_by_role("button", name="Generate campaign").click()
    expect(form.locator("[role=status]")).to_have_text("Generated 3 codes for Retry.")
    first = json.loads(lost[0])
    campaigns = retailer.call("GET", "/v1/campaigns").json()["data"]
    assert [c["id"] for c in campaigns] == [first["id"]]


def test_sign_in_and_the_timeline_work_from_the_keyboard_alone(page: Page, retailer: Retailer) -> None:
    created = retailer.call(
        "POST", "/v1/coupons", json={"code": "KEYS1", "discount_type": "fixed", "discount_value": 1}
    )
    assert created.status_code == 201
    page.goto("/dashboard/coupons/KEYS1")
    expect(page.get_by_label("Secret key")).to_be_focused()  # the sign-in form takes the focus
    page.keyboard.type(retailer.secret_key)
    page.keyboard.press("Enter")
    expect(page.locator("#chain-badge")).to_contain_text("Chain verified: 1 events")
    version = page.get_by_role("button", name="Show the coupon as it was after version 1")
    version.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="As it was after version 1")).to_be_focused()
    page.get_by_role("button", name="Deactivate").focus()
    page.keyboard.press("Space")
    expect(page.locator("#current-state [data-fact=status]")).to_have_text("inactive")
    # A visible focus ring on the focused control.
    outline = page.get_by_role("button", name="Deactivate").evaluate("b => getComputedStyle(b).outlineStyle")
    assert outline == "solid"
