"""The brute-force limit over HTTP: failed code lookups beyond the budget are 429 RATE_LIMITED with
Retry-After on every route that takes a code; other shoppers and successful lookups are not slowed.

The throttles' clocks are held still (and moved on by the tests that wait for Retry-After), so
that a slow machine cannot refill a budget between two requests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pyrate_limiter import WallClock

from api.app import create_app
from api.settings import Settings
from tests.support.http import Api, Sql, assert_error

SMALL_BUDGET = 3


class StillClock(WallClock):
    """The wall clock, stopped; moved on only by ``advance``."""

    def __init__(self) -> None:
        self.ms = super().now()

    def now(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


@pytest.fixture(scope="module")
def small_app(e2e_database_url: str, client: TestClient) -> Iterator[FastAPI]:
    """A second server on the same database: a budget of 3 a minute, behind proxies in 10.0.0.0/8."""
    settings = Settings(
        database_url=e2e_database_url,
        throttle_budget=SMALL_BUDGET,
        trusted_proxies="10.0.0.0/8",
        run_projections=False,
    )
    app = create_app(settings)
    with TestClient(app):
        yield app


@pytest.fixture(autouse=True)
def still_clock(app: FastAPI, client: TestClient) -> StillClock:
    clock = StillClock()
    app.state.services.throttle.clock = clock
    return clock


@pytest.fixture
def small_clock(small_app: FastAPI) -> StillClock:
    clock = StillClock()
    small_app.state.services.throttle.clock = clock
    return clock


def small_api(app: FastAPI, peer: str = "testclient") -> Api:
    """A new retailer on ``app``, whose requests come from ``peer``."""
    created = app.state.services.retailers.create(f"throttled-{uuid4().hex[:12]}")
    client = TestClient(app, client=(peer, 40000))
    return Api(client, created.retailer_id, created.api_key, created.publishable_key)


def order_body(code: str, customer: str) -> dict[str, Any]:
    return {"code": code, "subtotal": "50.00", "customer_id": customer}


def request(
    api: Api, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return api.client.request(method, path, json=json, headers={**api.headers, **(headers or {})})


Lookup = Callable[..., httpx.Response]


def lookup_by(route: str, api: Api, product_id: int | None = None) -> Lookup:
    """A function that looks ``code`` up on ``route`` as the shopper ``customer`` (the routes
    without a customer_id count the client address)."""

    def look_up(code: str, customer: str = "cust-1", headers: dict[str, str] | None = None) -> httpx.Response:
        match route:
            case "apply":
                return request(api, "POST", "/v1/coupons/apply", order_body(code, customer), headers)
            case "validate":
                return request(api, "POST", "/v1/coupons/validate", order_body(code, customer), headers)
            case "reserve":
                return request(api, "POST", "/v1/coupons/reserve", order_body(code, customer), headers)
            case "checkout":
                body = {"user_id": int(customer.removeprefix("cust-")), "coupon_code": code}
                body["items"] = [{"product_id": product_id, "quantity": 1}]
                return request(api, "POST", "/v1/checkout", body, headers)
            case "get":
                return request(api, "GET", f"/v1/coupons/{code}", headers=headers)
            case "events":
                return request(api, "GET", f"/v1/coupons/{code}/events", headers=headers)
            case "patch":
                return request(api, "PATCH", f"/v1/coupons/{code}", {"max_uses": 1000}, headers)
            case "delete":
                return request(api, "DELETE", f"/v1/coupons/{code}", headers=headers)
            case "deactivate" | "activate":
                return request(api, "POST", f"/v1/coupons/{code}/{route}", headers=headers)
            case "transition":
                return request(api, "POST", f"/v1/coupons/{code}/transitions", {"event": "deactivate"}, headers)
        raise AssertionError(route)

    return look_up


def ready(api: Api, route: str) -> Lookup:
    """A coupon KNOWN (no limits) and, for checkout, a product: then the lookup function."""
    api.create_coupon("KNOWN")
    product_id = api.add_product("Mug", "50.00", 10_000)["id"] if route == "checkout" else None
    return lookup_by(route, api, product_id)


def assert_rate_limited(response: httpx.Response, seconds: int) -> None:
    details = assert_error(response, 429, "RATE_LIMITED")
    assert details == {"retry_after": seconds}
    assert response.headers["Retry-After"] == str(seconds)


def assert_not_found(response: httpx.Response) -> None:
    assert_error(response, 404, "COUPON_NOT_FOUND")


SHOPPER_ROUTES = ["apply", "validate", "reserve", "get", "checkout"]
EVERY_CODE_ROUTE = [*SHOPPER_ROUTES, "events", "patch", "delete", "deactivate", "activate", "transition"]


@pytest.mark.parametrize("route", SHOPPER_ROUTES)
def test_the_21st_failed_lookup_in_a_minute_is_429_with_retry_after(api: Api, route: str) -> None:
    look_up = ready(api, route)

    for attempt in range(20):
        assert_not_found(look_up(f"GUESS{attempt}"))
    refused = look_up("GUESS20")

    assert_rate_limited(refused, 3)  # one more guess every 60 s / 20


@pytest.mark.parametrize("route", EVERY_CODE_ROUTE)
def test_every_route_that_takes_a_code_counts_failures_and_once_spent_refuses_even_a_found_code(
    small_app: FastAPI, small_clock: StillClock, route: str
) -> None:
    api = small_api(small_app)
    look_up = ready(api, route)

    for attempt in range(SMALL_BUDGET):
        assert_not_found(look_up(f"GUESS{attempt}"))

    assert_rate_limited(look_up("GUESS9"), 20)
    assert_rate_limited(look_up("KNOWN"), 20)  # or a guesser would learn from 429 versus 2xx
    assert_rate_limited(look_up("not a code at all!"), 20)


def test_a_code_that_cannot_exist_counts_like_a_missing_one(small_app: FastAPI, small_clock: StillClock) -> None:
    look_up = ready(small_api(small_app), "apply")
    for code in ("x", "not a code at all!", "Ω" * 60):
        assert_not_found(look_up(code))
    assert_rate_limited(look_up("GUESS"), 20)


def test_after_retry_after_a_shopper_may_look_up_again_and_fail_once_more(
    small_app: FastAPI, small_clock: StillClock, sql: Sql
) -> None:
    api = small_api(small_app)
    look_up = ready(api, "apply")
    for attempt in range(SMALL_BUDGET):
        assert_not_found(look_up(f"GUESS{attempt}"))
    assert_rate_limited(look_up("KNOWN"), 20)

    small_clock.advance(10)
    assert_rate_limited(look_up("KNOWN"), 10)
    small_clock.advance(10)
    assert look_up("KNOWN").status_code == 201
    assert_not_found(look_up("GUESS3"))  # one unit came back
    assert_rate_limited(look_up("GUESS4"), 20)
    assert_rate_limited(look_up("KNOWN"), 20)


def test_other_shoppers_and_other_keys_are_not_affected(app: FastAPI, api: Api, other_api: Api) -> None:
    look_up = ready(api, "apply")
    for attempt in range(20):
        assert_not_found(look_up(f"GUESS{attempt}", customer="cust-1"))
    assert_rate_limited(look_up("KNOWN", customer="cust-1"), 3)

    assert look_up("KNOWN", customer="cust-2").status_code == 201
    assert_not_found(look_up("GUESS", customer="cust-2"))
    # Without a customer_id, the shopper is the client address: another budget.
    assert_not_found(request(api, "POST", "/v1/coupons/validate", {"code": "GUESS", "subtotal": "5.00"}))
    assert request(api, "GET", "/v1/coupons/KNOWN").status_code == 200
    # Another key of the same retailer, and another retailer, with the same customer_id.
    second_key = app.state.services.retailers.issue_key(_name_of(api, app)).key
    assert_not_found(lookup_by("apply", Api(api.client, api.retailer_id, second_key))("GUESS", customer="cust-1"))
    other_api.create_coupon("KNOWN")
    assert lookup_by("apply", other_api)("KNOWN", customer="cust-1").status_code == 201
    assert_not_found(lookup_by("apply", other_api)("GUESS", customer="cust-1"))


def _name_of(api: Api, app: FastAPI) -> str:
    with app.state.services.pool.connection() as conn:
        row = conn.execute("SELECT name FROM retailers WHERE id = %s", (api.retailer_id,)).fetchone()
    return str(row[0])


def test_a_thousand_successful_applies_in_a_row_are_never_throttled(
    small_app: FastAPI, small_clock: StillClock, sql: Sql
) -> None:
    api = small_api(small_app)
    look_up = ready(api, "apply")
    for attempt in range(SMALL_BUDGET - 1):  # within budget: one failure left
        assert_not_found(look_up(f"GUESS{attempt}"))
    rows_before = sql("SELECT key, state, updated_at FROM rate_limit_state ORDER BY key")

    statuses = [look_up("KNOWN").status_code for _ in range(1000)]

    assert statuses == [201] * 1000
    # A successful lookup is never counted: the budgets were not even read.
    assert sql("SELECT key, state, updated_at FROM rate_limit_state ORDER BY key") == rows_before
    assert api.coupon("KNOWN")["uses_count"] == 1000


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(
    small_app: FastAPI, small_clock: StillClock
) -> None:
    api = small_api(small_app, peer="10.0.0.1")
    look_up = ready(api, "get")
    shopper = {"X-Forwarded-For": "1.2.3.4, 198.51.100.1"}  # what the client wrote, then what the proxy saw
    for attempt in range(SMALL_BUDGET):
        assert_not_found(look_up(f"GUESS{attempt}", headers=shopper))
    assert_rate_limited(look_up("KNOWN", headers=shopper), 20)
    # The client cannot escape by writing another first hop: the proxy's is what counts.
    assert_rate_limited(look_up("KNOWN", headers={"X-Forwarded-For": "5.6.7.8, 198.51.100.1"}), 20)

    assert look_up("KNOWN", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 200
    assert_not_found(look_up("GUESS", headers={"X-Forwarded-For": "198.51.100.2, 10.0.0.7"}))
    # The proxy itself (no header) is one more client.
    assert_not_found(look_up("GUESS"))


def test_a_spoofed_x_forwarded_for_from_an_untrusted_peer_is_ignored(
    small_app: FastAPI, small_clock: StillClock
) -> None:
    api = small_api(small_app, peer="203.0.113.9")
    look_up = ready(api, "get")
    for attempt in range(SMALL_BUDGET):
        assert_not_found(look_up(f"GUESS{attempt}", headers={"X-Forwarded-For": f"198.51.100.{attempt}"}))

    assert_rate_limited(look_up("GUESS", headers={"X-Forwarded-For": "198.51.100.99"}), 20)
    assert_rate_limited(look_up("KNOWN"), 20)


@pytest.mark.parametrize(
    "forwarded", ["garbage", ",,,", "[::1", "1.2.3.4:99999:1", "unknown, _hidden", b"\xff\xfe", " " * 3000]
)
def test_a_malformed_x_forwarded_for_never_fails_a_request(
    small_app: FastAPI, small_clock: StillClock, forwarded: str
) -> None:
    api = small_api(small_app, peer="10.0.0.1")
    look_up = ready(api, "validate")
    headers = {"X-Forwarded-For": forwarded}
    assert look_up("KNOWN", headers=headers).status_code == 200
    assert_not_found(look_up("GUESS", headers=headers))


def test_a_failed_lookup_answered_429_changes_nothing(api: Api) -> None:
    look_up = ready(api, "checkout")
    product_id = api.get("/v1/products").json()[0]["id"]
    for attempt in range(20):
        assert_not_found(look_up(f"GUESS{attempt}", customer="cust-5"))
    assert_rate_limited(look_up("KNOWN", customer="cust-5"), 3)

    assert api.stock_of(product_id) == 10_000
    assert api.coupon("KNOWN")["uses_count"] == 0
