"""A retailer never sees another's data: another retailer's coupon or product is a 404, exactly
like a missing one, and nothing it does touches the owner's coupons, products or orders. One
walk covers every route of the app, so a route added later is covered or named as uncovered."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from api.app import create_app
from api.settings import Settings
from tests.support.http import Api, Sql, assert_error
from tests.support.postgres import wait_for


@pytest.fixture(scope="module")
def app(e2e_database_url: str) -> FastAPI:
    """The app, with a brute-force budget the walk below cannot spend: it looks up the owner's
    code and a missing one on every route that takes a code, more failed lookups than one
    shopper may make in a minute."""
    return create_app(Settings(database_url=e2e_database_url, throttle_budget=1000))


FOREIGN_REQUESTS = [
    ("GET", "/v1/coupons/THEIRS1", None),
    ("GET", "/v1/coupons/theirs1/events", None),
    ("POST", "/v1/coupons/THEIRS1/deactivate", None),
    ("POST", "/v1/coupons/THEIRS1/activate", None),
    ("POST", "/v1/coupons/validate", {"code": "THEIRS1", "subtotal": "100"}),
    ("POST", "/v1/coupons/apply", {"code": "THEIRS1", "subtotal": "100"}),
]


@pytest.mark.parametrize(("method", "path", "body"), FOREIGN_REQUESTS, ids=[f"{m} {p}" for m, p, _ in FOREIGN_REQUESTS])
def test_another_retailers_coupon_is_not_found_and_left_untouched(
    api: Api, other_api: Api, method: str, path: str, body: dict[str, str] | None
) -> None:
    owned = api.create_coupon("THEIRS1")
    response = other_api.client.request(method, path, json=body, headers=other_api.headers)
    details = assert_error(response, 404, "COUPON_NOT_FOUND")
    missing = assert_error(other_api.get("/v1/coupons/NEVER1"), 404, "COUPON_NOT_FOUND")
    assert set(details) == set(missing)  # indistinguishable from a code that does not exist
    assert api.coupon("THEIRS1") == owned
    assert [e["type"] for e in api.events("THEIRS1")] == ["Coupon.Created"]


def test_a_retailers_list_excludes_other_retailers_coupons(api: Api, other_api: Api) -> None:
    api.create_coupon("MINE1")
    api.create_coupon("MINE2")
    other_api.create_coupon("YOURS1")
    assert api.list_codes() == ["MINE1", "MINE2"]
    assert other_api.list_codes() == ["YOURS1"]
    assert other_api.list_codes(status="active") == ["YOURS1"]


def test_two_retailers_can_own_the_same_code_independently(api: Api, other_api: Api) -> None:
    mine = api.create_coupon("SHARED1", discount_value="10")
    theirs = other_api.create_coupon("shared1", discount_type="fixed", discount_value="3")
    assert theirs["code"] == "SHARED1"
    assert theirs["id"] != mine["id"]

    assert api.apply("SHARED1", "100").json()["discount_amount"] == "10.00"
    assert (
        other_api.post("/v1/coupons/validate", json={"code": "SHARED1", "subtotal": "100"}).json()["discount_amount"]
        == "3.00"
    )
    other_api.post("/v1/coupons/SHARED1/deactivate")

    assert api.coupon("SHARED1")["uses_count"] == 1
    assert api.coupon("SHARED1")["is_active"] is True
    assert other_api.coupon("SHARED1")["uses_count"] == 0
    assert other_api.coupon("SHARED1")["is_active"] is False
    assert [c["id"] for c in api.get("/v1/coupons").json()["data"]] == [mine["id"]]
    assert [c["id"] for c in other_api.get("/v1/coupons").json()["data"]] == [theirs["id"]]


def test_the_same_idempotency_key_from_two_retailers_makes_two_redemptions(api: Api, other_api: Api) -> None:
    api.create_coupon("KEYED1")
    other_api.create_coupon("KEYED1")
    first = api.apply("KEYED1", "50", key="order-1")
    second = other_api.apply("KEYED1", "50", key="order-1")
    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second.headers
    assert first.json()["redemption_id"] != second.json()["redemption_id"]
    assert api.coupon("KEYED1")["uses_count"] == 1
    assert other_api.coupon("KEYED1")["uses_count"] == 1


def test_a_retailer_cannot_replay_another_retailers_redemption(api: Api, other_api: Api) -> None:
    api.create_coupon("KEYED2")
    api.apply("KEYED2", "50", key="secret-key")
    response = other_api.apply("KEYED2", "50", key="secret-key")
    assert_error(response, 404, "COUPON_NOT_FOUND")
    assert "Idempotent-Replayed" not in response.headers


# ---- Every route, walked by a second retailer with the first retailer's ids ----------------------


@dataclass(frozen=True)
class Ids:
    """The tenant-owned ids a route can take: a coupon code, a product id, an order id, a redemption id,
    a campaign id, a checkout session id, a reservation id, a webhook endpoint and one of its deliveries."""

    code: str
    product_id: int
    order_id: int
    redemption_id: str
    campaign_id: str
    session_id: str
    reservation_id: str
    webhook_endpoint_id: str
    webhook_delivery_id: str


MISSING_CAMPAIGN = "00000000-0000-4000-8000-00000000ca4e"


def missing_like(owner: Ids) -> Ids:
    """Ids that exist for nobody, equal to each other where the owner's are (a product and an
    order may share a number), so that both mask the same way."""
    order_id = 999_999_999 if owner.order_id == owner.product_id else 999_999_998
    return Ids(
        code="NEVER-ISSUED",
        product_id=999_999_999,
        order_id=order_id,
        redemption_id=str(UUID("00000000-0000-4000-8000-000000000000")),
        campaign_id=MISSING_CAMPAIGN,
        session_id="never-synced-cart",
        reservation_id=str(UUID("00000000-0000-4000-8000-0000000000e5")),
        webhook_endpoint_id=str(UUID("00000000-0000-4000-8000-0000000000e9")),
        webhook_delivery_id=str(UUID("00000000-0000-4000-8000-0000000000d1")),
    )


Send = Callable[[Api, Ids], httpx.Response]
Probe = Callable[[Api, Ids, "Owned"], None]


@dataclass
class Owned:
    """What the first retailer owns, read through its own key, to compare before and after."""

    api: Api
    ids: Ids
    sql: Sql

    def snapshot(self) -> dict[str, Any]:
        return {
            "coupon": self.api.coupon(self.ids.code),
            "events": self.api.events(self.ids.code),
            "coupons": self.api.get("/v1/coupons").json(),
            "products": self.api.get("/v1/products").json(),
            "orders": self.sql(
                "SELECT id, user_id, subtotal, total FROM orders WHERE retailer_id = %s ORDER BY id",
                self.api.retailer_id,
            ),
            "order_coupons": self.sql(
                "SELECT order_id, coupon_code, redemption_id FROM order_coupons WHERE retailer_id = %s",
                self.api.retailer_id,
            ),
            "campaign": self.api.get(f"/v1/campaigns/{self.ids.campaign_id}").json(),
            "reservation": self.api.get(f"/v1/reservations/{self.ids.reservation_id}").json(),
            "campaign_coupons": self.api.get(f"/v1/campaigns/{self.ids.campaign_id}/coupons?format=csv").text,
            "session": self.api.get(f"/v1/checkout/sessions/{self.ids.session_id}").json(),
            "webhook_endpoint": self.api.get(f"/v1/webhooks/endpoints/{self.ids.webhook_endpoint_id}").json(),
        }


def _masked(value: Any, ids: Ids) -> Any:
    """An error with the ids it was given replaced by placeholders (and no request id), so that
    the answer for another retailer's id can be compared with the answer for a missing one."""
    if isinstance(value, dict):
        return {k: _masked(v, ids) for k, v in value.items() if k != "request_id"}
    if isinstance(value, list):
        return [_masked(v, ids) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {ids.product_id: "<product>", ids.order_id: "<order>"}.get(value, value)
    if isinstance(value, str):
        for token, placeholder in (
            (ids.redemption_id, "<redemption>"),
            (ids.session_id, "<session>"),
            (ids.campaign_id, "<campaign>"),
            (ids.reservation_id, "<reservation>"),
            (ids.webhook_endpoint_id, "<webhook endpoint>"),
            (ids.webhook_delivery_id, "<webhook delivery>"),
            (ids.code, "<code>"),
            (str(ids.product_id), "<product>"),
            (str(ids.order_id), "<order>"),
        ):
            value = re.sub(rf"(?<![\w-]){re.escape(token)}(?![\w-])", placeholder, value, flags=re.IGNORECASE)
        return value
    return value


def not_found(code: str, send: Send) -> Probe:
    """The owner's id is a 404 `code`, exactly like a missing id: same status, code, message
    and details once the ids are masked."""

    def probe(other: Api, owner: Ids, _: Owned) -> None:
        foreign = send(other, owner)
        assert_error(foreign, 404, code)
        missing_ids = missing_like(owner)
        missing = send(other, missing_ids)
        assert_error(missing, 404, code)
        assert _masked(foreign.json(), owner) == _masked(missing.json(), missing_ids)

    return probe


def lists_only_its_own(path: str, items: Callable[[Any], list[dict[str, Any]]]) -> Probe:
    """A list answers 200 with none of the owner's items."""

    def probe(other: Api, _: Ids, owned: Owned) -> None:
        response = other.get(path)
        assert response.status_code == 200, response.text
        theirs = {item["id"] for item in items(owned.api.get(path).json())}
        assert theirs, "the owner has items that could leak"
        assert not {item["id"] for item in items(response.json())} & theirs

    return probe


def digest_of_its_own(other: Api, _: Ids, owned: Owned) -> None:
    """A digest covers the caller's own streams only: at the same position, the foreign retailer's
    names itself and holds none of the owner's streams."""
    mine = owned.api.get("/v1/audit/digest").json()
    assert mine["streams"] > 0, "the owner has streams that could leak"
    response = other.get("/v1/audit/digest", params={"position": mine["position"]})
    assert response.status_code == 200, response.text
    theirs = response.json()
    assert theirs["retailer_id"] == str(other.retailer_id)
    assert theirs["root"] != mine["root"]


def log_holds_only_its_own(other: Api, _: Ids, owned: Owned) -> None:
    """The retailer-wide export (jsonl and a JSON page) holds none of the owner's streams."""
    theirs = {json.loads(line)["stream"] for line in owned.api.get("/v1/audit/events").text.splitlines()}
    assert theirs, "the owner has events that could leak"
    response = other.get("/v1/audit/events")
    assert response.status_code == 200, response.text
    assert not {json.loads(line)["stream"] for line in response.text.splitlines()} & theirs
    page = other.get("/v1/audit/events", params={"format": "json"}).json()
    assert not {event["stream"] for event in page["data"]} & theirs


def same_public_key(other: Api, _: Ids, owned: Owned) -> None:
    """The deployment's signing key: the same for everyone, and nothing of any retailer."""
    response = other.get("/v1/audit/public-key")
    assert response.status_code == 200, response.text
    assert response.json() == owned.api.get("/v1/audit/public-key").json()


def redemption_log_holds_only_its_own(other: Api, owner: Ids, owned: Owned) -> None:
    """The redemption log (and its filter by the owner's code) holds none of the owner's uses."""
    theirs = {r["redemption_id"] for r in owned.api.get("/v1/redemptions").json()["data"]}
    assert owner.redemption_id in theirs, "the owner has a redemption that could leak"
    for path in ("/v1/redemptions", f"/v1/redemptions?code={owner.code}"):
        response = other.get(path)
        assert response.status_code == 200, response.text
        assert not {r["redemption_id"] for r in response.json()["data"]} & theirs


def daily_figures_hold_only_its_own(other: Api, _: Ids, owned: Owned) -> None:
    """The daily figures of today (every grouping, JSON and CSV) hold none of the owner's uses."""
    today = datetime.now(UTC).date().isoformat()
    for group_by in ("coupon", "campaign", "retailer"):
        path = f"/v1/analytics/daily?from={today}&to={today}&group_by={group_by}"
        assert owned.api.get(path).json()["data"], "the owner has figures that could leak"
        assert other.get(path).json() == {"data": []}
        assert len(other.get(f"{path}&format=csv").text.splitlines()) == 1  # the header alone


def storefront_lists_only_its_own(other: Api, owner: Ids, owned: Owned) -> None:
    """The storefront's list (with each retailer's publishable key) holds none of the owner's coupons."""
    theirs = {c["code"] for c in owned.api.publishable.get("/v1/storefront/coupons").json()["data"]}
    assert owner.code in theirs, "the owner has a public coupon that could leak"
    response = other.publishable.get("/v1/storefront/coupons")
    assert response.status_code == 200, response.text
    assert not {c["code"] for c in response.json()["data"]} & theirs


def deliveries_only_its_own(other: Api, owner: Ids, owned: Owned) -> None:
    """The webhook delivery list (and its filter by the owner's endpoint) holds none of the owner's."""
    theirs = {d["id"] for d in owned.api.get("/v1/webhooks/deliveries").json()["data"]}
    assert owner.webhook_delivery_id in theirs, "the owner has a delivery that could leak"
    for path in ("/v1/webhooks/deliveries", f"/v1/webhooks/deliveries?endpoint_id={owner.webhook_endpoint_id}"):
        response = other.get(path)
        assert response.status_code == 200, response.text
        assert not {d["id"] for d in response.json()["data"]} & theirs


def all_of(*probes: Probe) -> Probe:
    """Several probes of one route (a list as JSON and as CSV)."""

    def probe(other: Api, owner: Ids, owned: Owned) -> None:
        for each in probes:
            each(other, owner, owned)

    return probe


def creates_its_own(path: str, body: Callable[[Ids], dict[str, Any]]) -> Probe:
    """A create under the owner's code or name makes the caller's own item, not the owner's."""

    def probe(other: Api, owner: Ids, owned: Owned) -> None:
        before = owned.snapshot()
        response = other.post(path, json=body(owner))
        assert response.status_code == 201, response.text
        created = response.json()
        owners_ids = {item["id"] for item in before["coupons"]["data"]} | {p["id"] for p in before["products"]}
        assert created["id"] not in owners_ids

    return probe


# Routes that take no tenant-owned id and return no tenant data.
EXEMPT = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),  # no key, no label naming a retailer, code, customer or key (test_metrics_http)
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("WEBSOCKET", "/docs/assets"),  # the static files of /docs and /redoc (a mount, listed this way)
    # The dashboard's page shells and static files: no key, no data (their scripts call the API).
    ("GET", "/dashboard"),
    ("GET", "/dashboard/coupons/{code}"),
    ("GET", "/dashboard/campaigns"),
    ("GET", "/dashboard/webhooks"),
    ("WEBSOCKET", "/dashboard/static"),
}

# One probe per (method, path), run in this order: the creates come last, so that until then the
# second retailer owns no coupon under the owner's code. A route missing here fails the walk.
FOREIGN_PROBES: dict[tuple[str, str], Probe] = {
    ("GET", "/v1/coupons"): lists_only_its_own("/v1/coupons", lambda body: body["data"]),
    ("GET", "/v1/coupons/{code}"): not_found("COUPON_NOT_FOUND", lambda api, ids: api.get(f"/v1/coupons/{ids.code}")),
    ("GET", "/v1/coupons/{code}/events"): not_found(
        "COUPON_NOT_FOUND", lambda api, ids: api.get(f"/v1/coupons/{ids.code.lower()}/events")
    ),
    ("GET", "/v1/coupons/{code}/state"): all_of(
        not_found("COUPON_NOT_FOUND", lambda api, ids: api.get(f"/v1/coupons/{ids.code}/state?version=1")),
        not_found(
            "COUPON_NOT_FOUND", lambda api, ids: api.get(f"/v1/coupons/{ids.code}/state?at=2999-01-01T00:00:00Z")
        ),
    ),
    ("GET", "/v1/coupons/{code}/proof"): not_found(
        "COUPON_NOT_FOUND", lambda api, ids: api.get(f"/v1/coupons/{ids.code}/proof")
    ),
    ("GET", "/v1/audit/digest"): digest_of_its_own,
    ("GET", "/v1/audit/events"): log_holds_only_its_own,
    ("GET", "/v1/audit/public-key"): same_public_key,
    ("GET", "/v1/orders/{order_id}"): not_found("NOT_FOUND", lambda api, ids: api.get(f"/v1/orders/{ids.order_id}")),
    ("POST", "/v1/coupons/{code}/deactivate"): not_found(
        "COUPON_NOT_FOUND", lambda api, ids: api.post(f"/v1/coupons/{ids.code}/deactivate")
    ),
    ("POST", "/v1/coupons/{code}/activate"): not_found(
        "COUPON_NOT_FOUND", lambda api, ids: api.post(f"/v1/coupons/{ids.code}/activate")
    ),
    ("PATCH", "/v1/coupons/{code}"): not_found(
        "COUPON_NOT_FOUND",
        lambda api, ids: api.client.patch(f"/v1/coupons/{ids.code}", json={"max_uses": 1}, headers=api.headers),
    ),
    ("POST", "/v1/coupons/{code}/transitions"): not_found(
        "COUPON_NOT_FOUND",
        lambda api, ids: api.post(f"/v1/coupons/{ids.code}/transitions", json={"event": "deactivate"}),
    ),
    ("DELETE", "/v1/coupons/{code}"): not_found(
        "COUPON_NOT_FOUND", lambda api, ids: api.client.delete(f"/v1/coupons/{ids.code}", headers=api.headers)
    ),
    # The owner's checkout redemption: not found, and its use is not given back.
    ("GET", "/v1/redemptions"): redemption_log_holds_only_its_own,
    ("GET", "/v1/redemptions/{redemption_id}"): not_found(
        "REDEMPTION_NOT_FOUND", lambda api, ids: api.get(f"/v1/redemptions/{ids.redemption_id}")
    ),
    ("GET", "/v1/analytics/daily"): daily_figures_hold_only_its_own,
    ("POST", "/v1/redemptions/{redemption_id}/reverse"): not_found(
        "REDEMPTION_NOT_FOUND",
        lambda api, ids: api.post(f"/v1/redemptions/{ids.redemption_id}/reverse", json={"reason": "not mine"}),
    ),
    ("POST", "/v1/coupons/validate"): not_found(
        "COUPON_NOT_FOUND",
        lambda api, ids: api.post("/v1/coupons/validate", json={"code": ids.code, "subtotal": "100"}),
    ),
    # With the owner's code and the very idempotency key of the owner's checkout redemption.
    ("POST", "/v1/coupons/apply"): not_found(
        "COUPON_NOT_FOUND",
        lambda api, ids: api.apply(ids.code, "100", key=f"order:{ids.order_id}", order_id=str(ids.order_id)),
    ),
    # The owner's hold: not found, not confirmed, not released; and the owner's code cannot be held.
    ("POST", "/v1/coupons/reserve"): not_found(
        "COUPON_NOT_FOUND",
        lambda api, ids: api.post("/v1/coupons/reserve", json={"code": ids.code, "subtotal": "100"}),
    ),
    ("GET", "/v1/reservations/{reservation_id}"): not_found(
        "RESERVATION_NOT_FOUND", lambda api, ids: api.get(f"/v1/reservations/{ids.reservation_id}")
    ),
    ("POST", "/v1/reservations/{reservation_id}/confirm"): not_found(
        "RESERVATION_NOT_FOUND", lambda api, ids: api.post(f"/v1/reservations/{ids.reservation_id}/confirm")
    ),
    ("POST", "/v1/reservations/{reservation_id}/release"): not_found(
        "RESERVATION_NOT_FOUND", lambda api, ids: api.post(f"/v1/reservations/{ids.reservation_id}/release")
    ),
    ("GET", "/v1/products"): lists_only_its_own("/v1/products", lambda body: body),
    # The owner's product (with the owner's coupon): not found, before the coupon is looked at.
    ("POST", "/v1/checkout"): all_of(
        not_found(
            "NOT_FOUND",
            lambda api, ids: api.post(
                "/v1/checkout",
                json={"user_id": 7, "items": [{"product_id": ids.product_id, "quantity": 1}], "coupon_code": ids.code},
            ),
        ),
        # The owner's checkout session (its coupon held, its stock held): not found, not placed.
        not_found(
            "NOT_FOUND", lambda api, ids: api.post("/v1/checkout", json={"user_id": 7, "session_id": ids.session_id})
        ),
    ),
    # Checkout sessions, with the publishable key a storefront would use.
    ("GET", "/v1/checkout/sessions/{session_id}"): not_found(
        "NOT_FOUND", lambda api, ids: api.publishable.get(f"/v1/checkout/sessions/{ids.session_id}")
    ),
    ("POST", "/v1/checkout/sessions/{session_id}/coupon"): not_found(
        "NOT_FOUND",
        lambda api, ids: api.publishable.post(
            f"/v1/checkout/sessions/{ids.session_id}/coupon", json={"code": ids.code}
        ),
    ),
    ("DELETE", "/v1/checkout/sessions/{session_id}/coupon"): not_found(
        "NOT_FOUND",
        lambda api, ids: api.client.delete(
            f"/v1/checkout/sessions/{ids.session_id}/coupon", headers=api.publishable.headers
        ),
    ),
    ("POST", "/v1/checkout/sessions/{session_id}/hold-inventory"): not_found(
        "NOT_FOUND", lambda api, ids: api.publishable.post(f"/v1/checkout/sessions/{ids.session_id}/hold-inventory")
    ),
    # The owner's session id with the owner's product: the product is not found, nothing is synced.
    ("POST", "/v1/checkout/sessions"): not_found(
        "NOT_FOUND",
        lambda api, ids: api.publishable.post(
            "/v1/checkout/sessions",
            json={"session_id": ids.session_id, "items": [{"product_id": ids.product_id, "quantity": 1}]},
        ),
    ),
    ("GET", "/v1/campaigns"): lists_only_its_own("/v1/campaigns", lambda body: body["data"]),
    ("GET", "/v1/campaigns/{campaign_id}"): not_found(
        "CAMPAIGN_NOT_FOUND", lambda api, ids: api.get(f"/v1/campaigns/{ids.campaign_id}")
    ),
    ("GET", "/v1/campaigns/{campaign_id}/coupons"): all_of(
        not_found("CAMPAIGN_NOT_FOUND", lambda api, ids: api.get(f"/v1/campaigns/{ids.campaign_id}/coupons")),
        not_found(
            "CAMPAIGN_NOT_FOUND", lambda api, ids: api.get(f"/v1/campaigns/{ids.campaign_id}/coupons?format=csv")
        ),
    ),
    # With the publishable keys: the owner's public coupon is in no one else's storefront.
    ("GET", "/v1/storefront/coupons"): storefront_lists_only_its_own,
    ("POST", "/v1/storefront/coupons/verify"): not_found(
        "COUPON_NOT_FOUND",
        lambda api, ids: api.publishable.post(
            "/v1/storefront/coupons/verify", json={"code": ids.code, "cart_subtotal": "100"}
        ),
    ),
    ("GET", "/v1/webhooks/endpoints"): lists_only_its_own("/v1/webhooks/endpoints", lambda body: body["data"]),
    ("GET", "/v1/webhooks/endpoints/{endpoint_id}"): not_found(
        "NOT_FOUND", lambda api, ids: api.get(f"/v1/webhooks/endpoints/{ids.webhook_endpoint_id}")
    ),
    ("DELETE", "/v1/webhooks/endpoints/{endpoint_id}"): not_found(
        "NOT_FOUND", lambda api, ids: api.delete(f"/v1/webhooks/endpoints/{ids.webhook_endpoint_id}")
    ),
    ("GET", "/v1/webhooks/deliveries"): deliveries_only_its_own,
    ("GET", "/v1/webhooks/deliveries/{delivery_id}"): not_found(
        "NOT_FOUND", lambda api, ids: api.get(f"/v1/webhooks/deliveries/{ids.webhook_delivery_id}")
    ),
    ("POST", "/v1/webhooks/deliveries/{delivery_id}/resend"): not_found(
        "NOT_FOUND", lambda api, ids: api.post(f"/v1/webhooks/deliveries/{ids.webhook_delivery_id}/resend")
    ),
    ("POST", "/v1/webhooks/endpoints"): creates_its_own(
        "/v1/webhooks/endpoints", lambda ids: {"url": "http://127.0.0.1:9/hook", "events": ["coupon.created"]}
    ),
    ("POST", "/v1/products"): creates_its_own(
        "/v1/products", lambda ids: {"name": f"Copy of {ids.product_id}", "price": "1.00", "stock": 1}
    ),
    ("POST", "/v1/coupons"): creates_its_own(
        "/v1/coupons", lambda ids: {"code": ids.code, "discount_type": "fixed", "discount_value": "1"}
    ),
    ("POST", "/v1/campaigns"): creates_its_own(
        "/v1/campaigns",
        lambda ids: {
            "name": "Copy",
            "prefix": "OWNED-",
            "count": 1,
            "coupon": {"discount_type": "fixed", "discount_value": 1},
        },
    ),
}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, the routes of included routers among them."""
    routes = set()
    for route in iter_route_contexts(app.routes):
        assert route.path is not None, route
        for method in route.methods or {"WEBSOCKET"}:
            if method != "HEAD":
                routes.add((method, route.path))
    return routes


def test_every_route_is_walked_by_the_foreign_retailer_walk(app: FastAPI) -> None:
    routes = app_routes(app)
    uncovered = sorted(routes - EXEMPT - set(FOREIGN_PROBES))
    assert not uncovered, f"routes without a foreign-retailer probe in FOREIGN_PROBES (or EXEMPT): {uncovered}"
    assert not (set(FOREIGN_PROBES) | EXEMPT) - routes, "probes for routes the app no longer has"


def test_another_retailer_walking_every_route_with_the_owners_ids_finds_nothing_and_changes_nothing(
    app: FastAPI, api: Api, other_api: Api, sql: Sql
) -> None:
    # An endpoint nothing listens at (its deliveries stay pending, retried): the coupon makes one.
    endpoint = api.post("/v1/webhooks/endpoints", json={"url": "http://127.0.0.1:9/hook", "events": ["coupon.created"]})
    assert endpoint.status_code == 201, endpoint.text
    api.create_coupon("OWNED-1", max_uses=5, public=True)
    product = api.add_product("Owner's lamp", "20.00", 5)
    order = api.post(
        "/v1/checkout",
        json={"user_id": 41, "items": [{"product_id": product["id"], "quantity": 1}], "coupon_code": "OWNED-1"},
    )
    assert order.status_code == 201, order.text
    campaign = api.post(
        "/v1/campaigns",
        json={
            "name": "Owned",
            "prefix": "OWNED-",
            "count": 2,
            "coupon": {"discount_type": "fixed", "discount_value": 2},
        },
    )
    assert campaign.status_code == 201, campaign.text
    session = api.post(
        "/v1/checkout/sessions",
        json={"session_id": "owners-cart", "items": [{"product_id": product["id"], "quantity": 1}]},
    )
    assert session.status_code == 201, session.text
    held = api.post("/v1/checkout/sessions/owners-cart/coupon", json={"code": "OWNED-1"})
    assert held.status_code == 200, held.text
    assert api.post("/v1/checkout/sessions/owners-cart/hold-inventory").status_code == 200
    hold = api.post("/v1/coupons/reserve", json={"code": "OWNED-1", "subtotal": "50.00", "ttl_seconds": 3600})
    assert hold.status_code == 201, hold.text
    owner = Ids(
        code="OWNED-1",
        product_id=product["id"],
        order_id=order.json()["id"],
        redemption_id=order.json()["redemption_id"],
        campaign_id=campaign.json()["id"],
        session_id="owners-cart",
        reservation_id=hold.json()["reservation_id"],
        webhook_endpoint_id=endpoint.json()["id"],
        webhook_delivery_id=wait_for(
            lambda: api.get("/v1/webhooks/deliveries").json()["data"], 20, message="the owner's delivery"
        )[0]["id"],
    )
    owned = Owned(api, owner, sql)
    before = owned.snapshot()
    assert before["coupon"]["uses_count"] == 1
    assert [p["stock"] for p in before["products"]] == [4]
    assert len(before["orders"]) == len(before["order_coupons"]) == 1

    assert set(FOREIGN_PROBES) - EXEMPT <= app_routes(app)
    for (method, path), probe in FOREIGN_PROBES.items():
        try:
            probe(other_api, owner, owned)
        except AssertionError as error:
            raise AssertionError(f"{method} {path}: {error}") from error

    assert owned.snapshot() == before  # coupon, uses_count, events, stock, orders: untouched
    # The second retailer placed no order, and its own items are not in the owner's lists.
    assert sql("SELECT count(*) FROM orders WHERE retailer_id = %s", other_api.retailer_id) == [(0,)]
    assert len(other_api.get("/v1/coupons").json()["data"]) == 2  # its coupon and its campaign's one code
    assert len(other_api.get("/v1/products").json()) == 1


def test_a_checkout_with_another_retailers_product_is_not_found_and_changes_no_stock(
    api: Api, other_api: Api, sql: Sql
) -> None:
    theirs = api.add_product("Their vase", "30.00", 3)
    mine = other_api.add_product("My vase", "30.00", 3)
    body = {
        "user_id": 5,
        "items": [{"product_id": mine["id"], "quantity": 1}, {"product_id": theirs["id"], "quantity": 1}],
    }
    response = other_api.post("/v1/checkout", json=body)
    details = assert_error(response, 404, "NOT_FOUND")
    assert details == {"product_ids": [theirs["id"]]}
    assert response.json()["error"]["message"] == f"Product {theirs['id']} does not exist."
    assert api.stock_of(theirs["id"]) == 3
    assert other_api.stock_of(mine["id"]) == 3
    assert sql("SELECT count(*) FROM orders WHERE retailer_id IN (%s, %s)", api.retailer_id, other_api.retailer_id) == [
        (0,)
    ]
    # The owner still sells it; the order is the owner's.
    placed = api.post("/v1/checkout", json={"user_id": 5, "items": [{"product_id": theirs["id"], "quantity": 3}]})
    assert placed.status_code == 201, placed.text
    assert sql("SELECT retailer_id FROM orders WHERE id = %s", placed.json()["id"]) == [(api.retailer_id,)]


def test_a_retailers_product_list_excludes_other_retailers_products(api: Api, other_api: Api) -> None:
    mine = [api.add_product("Mine A", "1.00", 1), api.add_product("Mine B", "2.00", 2)]
    theirs = other_api.add_product("Theirs", "3.00", 3)
    assert api.get("/v1/products").json() == mine
    assert other_api.get("/v1/products").json() == [theirs]


def test_an_order_with_a_coupon_records_the_same_retailer_on_the_order_and_its_coupon_row(api: Api, sql: Sql) -> None:
    api.create_coupon("SAMEOWNER")
    product = api.add_product("Cup", "10.00", 2)
    response = api.post(
        "/v1/checkout",
        json={"user_id": 9, "items": [{"product_id": product["id"], "quantity": 1}], "coupon_code": "SAMEOWNER"},
    )
    assert response.status_code == 201, response.text
    rows = sql(
        "SELECT o.retailer_id, c.retailer_id FROM orders o JOIN order_coupons c ON c.order_id = o.id WHERE o.id = %s",
        response.json()["id"],
    )
    assert rows == [(api.retailer_id, api.retailer_id)]
