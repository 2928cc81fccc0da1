"""Checkout sessions over HTTP (seed 004's cart-summary, validate-coupon, remove-coupon,
hold-inventory) and the order placed from one (POST /v1/checkout {session_id, user_id}): every
route with each of its errors, Idempotency-Key on each call, a shopper's whole flow, and an
abandoned session whose coupon use and stock come back when it expires."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from api.shop.records import cleanup_expired_sessions
from ledger.metrics import metrics
from tests.support.http import Api, Sql, assert_error, assert_validation_failed

SESSIONS = "/v1/checkout/sessions"
SESSION_FIELDS = {
    "session_id",
    "status",
    "items",
    "subtotal",
    "coupon",
    "discount_amount",
    "total",
    "inventory_hold",
    "expires_at",
    "order_id",
    "created_at",
    "updated_at",
}
ORDER_FIELDS = {"id", "user_id", "subtotal", "total", "created_at"}
COUPON_ORDER_FIELDS = ORDER_FIELDS | {"discount_amount", "coupon_code", "redemption_id"}
SHORT_TTL = 2  # seconds: the abandoned-session app
_users = itertools.count(70_001)


def lines(*items: tuple[int, int]) -> list[dict[str, int]]:
    return [{"product_id": p, "quantity": q} for p, q in items]


def sync(api: Api, items: list[dict[str, int]], session_id: str | None = None, **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"items": items, **extra}
    if session_id is not None:
        body["session_id"] = session_id
    return api.post(SESSIONS, json=body)


def new_session(api: Api, *items: tuple[int, int]) -> dict[str, Any]:
    response = sync(api, lines(*items), session_id=f"s-{uuid4().hex[:12]}")
    assert response.status_code == 201, response.text
    return response.json()


@dataclass
class Page(Api):
    """A shop's page: the publishable key, and the client secret of the session it created
    (sent as X-Client-Secret on every call)."""

    client_secret: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {**super().headers, "X-Client-Secret": self.client_secret}


def sealed(caller: Api, session: dict[str, Any]) -> Page:
    """``caller`` (with its key), opening ``session`` with the client secret its creation answered."""
    return Page(caller.client, caller.retailer_id, caller.api_key, caller.publishable_key, session["client_secret"])


def apply_coupon(api: Api, session_id: str, code: str, **extra: Any) -> httpx.Response:
    return api.post(f"{SESSIONS}/{session_id}/coupon", json={"code": code, **extra})


def remove_coupon(api: Api, session_id: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return api.client.delete(f"{SESSIONS}/{session_id}/coupon", headers={**api.headers, **(headers or {})})


def hold(api: Api, session_id: str, **body: Any) -> httpx.Response:
    return api.post(f"{SESSIONS}/{session_id}/hold-inventory", json=body or None)


def place(api: Api, session_id: str, user_id: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return api.post("/v1/checkout", json={"session_id": session_id, "user_id": user_id}, headers=headers)


def timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --- sync (cart-summary) ---------------------------------------------------------------------------


def test_a_new_cart_is_priced_by_the_server(api: Api) -> None:
    tote = api.add_product("Tote", "10.50", 5)
    mug = api.add_product("Mug", "4.25", 10)
    response = sync(api, lines((tote["id"], 2), (mug["id"], 1), (tote["id"], 1)), subtotal="35.75")
    assert response.status_code == 201, response.text
    session = response.json()
    assert set(session) == SESSION_FIELDS | {"coupon_removed", "client_secret"}
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,100}", session["session_id"])
    assert session["status"] == "open"
    assert session["items"] == [  # the same product twice is one line
        {"product_id": tote["id"], "name": "Tote", "quantity": 3, "unit_price": "10.50", "line_total": "31.50"},
        {"product_id": mug["id"], "name": "Mug", "quantity": 1, "unit_price": "4.25", "line_total": "4.25"},
    ]
    assert (session["subtotal"], session["discount_amount"], session["total"]) == ("35.75", "0.00", "35.75")
    assert session["coupon"] is None and session["coupon_removed"] is None
    assert session["inventory_hold"] is None and session["order_id"] is None
    created = timestamp(session["created_at"])
    assert timestamp(session["expires_at"]) - created == timedelta(minutes=30)
    assert api.get(f"{SESSIONS}/{session['session_id']}").json() == {
        k: v for k, v in session.items() if k not in ("coupon_removed", "client_secret")
    }


def test_a_client_session_id_is_kept_and_a_resync_answers_200(api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    first = sync(api, lines((tote["id"], 1)), session_id="cart-ABC_123")
    assert first.status_code == 201, first.text
    again = sync(api, lines((tote["id"], 3)), session_id="cart-ABC_123", subtotal=30)
    assert again.status_code == 200, again.text
    assert again.json()["session_id"] == "cart-ABC_123"
    assert again.json()["subtotal"] == "30.00"
    assert again.json()["created_at"] == first.json()["created_at"]
    assert timestamp(again.json()["expires_at"]) > timestamp(first.json()["expires_at"])


def test_session_ids_belong_to_their_retailer(api: Api, other_api: Api) -> None:
    mine = api.add_product("Tote", "10.00", 5)
    theirs = other_api.add_product("Mug", "3.00", 5)
    assert sync(api, lines((mine["id"], 1)), session_id="shared-id").status_code == 201
    assert sync(other_api, lines((theirs["id"], 1)), session_id="shared-id").status_code == 201
    assert api.get(f"{SESSIONS}/shared-id").json()["items"][0]["name"] == "Tote"
    assert other_api.get(f"{SESSIONS}/shared-id").json()["items"][0]["name"] == "Mug"


def test_a_subtotal_that_differs_is_subtotal_mismatch_with_both_values(api: Api, sql: Sql) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    details = assert_error(sync(api, lines((tote["id"], 2)), subtotal="19.99"), 422, "SUBTOTAL_MISMATCH")
    assert details == {"subtotal": "19.99", "items_subtotal": "20.00"}
    assert sql("SELECT count(*) FROM checkout_sessions WHERE retailer_id = %s", api.retailer_id) == [(0,)]


def test_unknown_and_other_retailers_products_are_not_found(api: Api, other_api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    theirs = other_api.add_product("Mug", "3.00", 5)
    response = sync(api, lines((tote["id"], 1), (theirs["id"], 1), (999_999_999, 1)))
    details = assert_error(response, 404, "NOT_FOUND")
    assert details["product_ids"] == sorted([theirs["id"], 999_999_999])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"items": []}, "items"),
        ({}, "items"),
        ({"items": [{"product_id": 1, "quantity": 0}]}, "items.0.quantity"),
        ({"items": [{"product_id": 1, "quantity": 1, "unit_price": "1.00"}]}, "items.0.unit_price"),
        ({"items": [{"product_id": 1, "quantity": 1}], "session_id": "has space"}, "session_id"),
        ({"items": [{"product_id": 1, "quantity": 1}], "session_id": ""}, "session_id"),
        ({"items": [{"product_id": 1, "quantity": 1}], "session_id": "x" * 101}, "session_id"),
        ({"items": [{"product_id": 1, "quantity": 1}], "subtotal": "-1"}, "subtotal"),
        ({"items": [{"product_id": 1, "quantity": 1}], "tenant_id": 1}, "tenant_id"),
    ],
)
def test_an_invalid_cart_is_a_validation_failure(api: Api, body: dict[str, Any], field: str) -> None:
    assert field in assert_validation_failed(api.post(SESSIONS, json=body))


def test_a_completed_session_cannot_be_synced(api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    session = new_session(api, (tote["id"], 1))
    order = place(api, session["session_id"], next(_users))
    assert order.status_code == 201, order.text
    details = assert_error(sync(api, lines((tote["id"], 2)), session["session_id"]), 409, "SESSION_COMPLETED")
    assert details == {"session_id": session["session_id"], "order_id": order.json()["id"]}


def test_a_publishable_key_may_call_every_session_route_but_not_the_checkout(api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    api.create_coupon("PK10")
    created = new_session(api.publishable, (tote["id"], 1))
    sid, shop = created["session_id"], sealed(api.publishable, created)
    assert shop.get(f"{SESSIONS}/{sid}").status_code == 200
    assert apply_coupon(shop, sid, "PK10").status_code == 200
    assert remove_coupon(shop, sid).status_code == 200
    assert hold(shop, sid).status_code == 200
    assert_error(place(shop, sid, 1), 403, "FORBIDDEN")
    assert_error(shop.post("/v1/checkout", json={"user_id": 1, "items": lines((tote["id"], 1))}), 403, "FORBIDDEN")
    assert place(api, sid, 1).status_code == 201


# --- GET ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("session_id", ["missing-session", "not%20possible", "x" * 101])
def test_an_unknown_session_is_not_found(api: Api, session_id: str) -> None:
    assert_error(api.get(f"{SESSIONS}/{session_id}"), 404, "NOT_FOUND")


def test_another_retailers_session_is_not_found(api: Api, other_api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    session = new_session(api, (tote["id"], 1))
    sid = session["session_id"]
    for response in (
        other_api.get(f"{SESSIONS}/{sid}"),
        apply_coupon(other_api, sid, "ANY10"),
        remove_coupon(other_api, sid),
        hold(other_api, sid),
        place(other_api, sid, 1),
    ):
        assert assert_error(response, 404, "NOT_FOUND") == {"session_id": sid}


# --- coupon (validate-coupon, remove-coupon) -----------------------------------------------------------


def test_a_coupon_is_validated_against_the_cart_and_held_for_the_session(api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    api.create_coupon("TEN", discount_type="percentage", discount_value="10", max_uses=1)
    session = new_session(api, (tote["id"], 3))
    response = apply_coupon(api, session["session_id"], " ten ")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == SESSION_FIELDS
    coupon = body["coupon"]
    assert (coupon["code"], coupon["discount_amount"], coupon["free_shipping"]) == ("TEN", "3.00", False)
    assert (body["discount_amount"], body["total"]) == ("3.00", "27.00")
    # The hold is the ledger's: it lasts as long as the session and counts against max_uses.
    reservation = api.get(f"/v1/reservations/{coupon['reservation_id']}").json()
    assert reservation["status"] == "held"
    assert timestamp(reservation["expires_at"]) == timestamp(body["expires_at"])
    other = new_session(api, (tote["id"], 1))
    refused = apply_coupon(sealed(api.publishable, other), other["session_id"], "TEN")
    details = assert_error(refused, 422, "USAGE_LIMIT_REACHED")
    # A refusal as a shopper may see it (as storefront verify says it): no limits, counts or campaign.
    assert "max_uses" not in details and "held" not in details
    assert refused.json()["error"]["message"] == "Coupon TEN has been used as many times as it may be."
    # Removing it gives the use back at once; removing again changes nothing.
    removed = remove_coupon(api, session["session_id"])
    assert removed.status_code == 200, removed.text
    assert removed.json()["coupon"] is None and removed.json()["total"] == "30.00"
    assert api.get(f"/v1/reservations/{coupon['reservation_id']}").json()["status"] == "released"
    again = remove_coupon(api, session["session_id"])
    assert again.status_code == 200 and again.json() == removed.json()
    assert apply_coupon(api, other["session_id"], "TEN").status_code == 200


def test_a_new_coupon_replaces_the_held_one_and_a_refused_one_changes_nothing(api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    api.create_coupon("FIRST5", discount_type="fixed", discount_value="5", max_uses=1)
    api.create_coupon("SECOND2", discount_type="fixed", discount_value="2")
    api.create_coupon("BIGCART", min_order_value="100.00")
    session = new_session(api, (tote["id"], 2))
    sid = session["session_id"]
    first = apply_coupon(api, sid, "FIRST5").json()["coupon"]
    details = assert_error(apply_coupon(api, sid, "BIGCART"), 422, "MIN_ORDER_NOT_MET")
    assert details["required_minimum"] == "100.00"
    assert api.get(f"{SESSIONS}/{sid}").json()["coupon"] == first
    assert_error(apply_coupon(api, sid, "NOPE99"), 404, "COUPON_NOT_FOUND")
    second = apply_coupon(api, sid, "SECOND2").json()["coupon"]
    assert second["code"] == "SECOND2"
    assert api.get(f"/v1/reservations/{first['reservation_id']}").json()["status"] == "released"
    assert "Coupon.ReservationReleased" in [e["type"] for e in api.events("FIRST5")]
    # FIRST5's one use is free again.
    assert apply_coupon(api, new_session(api, (tote["id"], 1))["session_id"], "FIRST5").status_code == 200


def test_a_coupon_with_a_per_customer_limit_needs_the_customer(api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    api.create_coupon("ONEEACH", max_uses_per_customer=1)
    sid = new_session(api, (tote["id"], 1))["session_id"]
    assert_error(apply_coupon(api, sid, "ONEEACH"), 422, "CUSTOMER_ID_REQUIRED")
    held = apply_coupon(api, sid, "ONEEACH", customer_id=7)
    assert held.status_code == 200, held.text
    assert held.json()["coupon"]["customer_id"] == "7"
    other = new_session(api, (tote["id"], 1))["session_id"]
    assert_error(apply_coupon(api, other, "ONEEACH", customer_id="7"), 422, "CUSTOMER_LIMIT_REACHED")
    # The order must be the customer's the coupon is held for.
    details = assert_error(place(api, sid, 8), 422, "CUSTOMER_MISMATCH")
    assert details == {"customer_id": "7", "user_id": 8}
    assert place(api, sid, 7).status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "code"),
        ({"code": ""}, "code"),
        ({"code": "OK10", "customer_id": ""}, "customer_id"),
        ({"code": "A", "x": 1}, "x"),
    ],
)
def test_an_invalid_coupon_request_is_a_validation_failure(api: Api, body: dict[str, Any], field: str) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    sid = new_session(api, (tote["id"], 1))["session_id"]
    assert field in assert_validation_failed(api.post(f"{SESSIONS}/{sid}/coupon", json=body))


def test_coupon_calls_on_an_unknown_or_completed_session(api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    api.create_coupon("DONE10")
    assert_error(apply_coupon(api, "no-such-session", "DONE10"), 404, "NOT_FOUND")
    assert_error(remove_coupon(api, "no-such-session"), 404, "NOT_FOUND")
    sid = new_session(api, (tote["id"], 1))["session_id"]
    order = place(api, sid, next(_users)).json()
    for response in (apply_coupon(api, sid, "DONE10"), remove_coupon(api, sid)):
        assert assert_error(response, 409, "SESSION_COMPLETED")["order_id"] == order["id"]


def test_a_resync_prices_the_coupon_again_or_drops_it_saying_why(api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 50)
    api.create_coupon("MIN30", discount_type="percentage", discount_value="10", min_order_value="30.00", max_uses=1)
    sid = new_session(api, (tote["id"], 3))["session_id"]
    held = apply_coupon(api, sid, "MIN30").json()["coupon"]
    assert held["discount_amount"] == "3.00"
    bigger = sync(api, lines((tote["id"], 5)), sid)
    assert bigger.status_code == 200, bigger.text
    repriced = bigger.json()["coupon"]
    assert (repriced["code"], repriced["discount_amount"]) == ("MIN30", "5.00")
    assert repriced["reservation_id"] != held["reservation_id"]  # the old hold released in the same save
    assert api.get(f"/v1/reservations/{held['reservation_id']}").json()["status"] == "released"
    assert bigger.json()["coupon_removed"] is None
    smaller = sync(api, lines((tote["id"], 2)), sid)
    assert smaller.status_code == 200, smaller.text
    body = smaller.json()
    assert body["coupon"] is None and body["total"] == "20.00"
    removed = body["coupon_removed"]
    assert removed["code"] == "MIN30"
    assert removed["reason"]["code"] == "MIN_ORDER_NOT_MET"
    assert removed["reason"]["details"] == {"required_minimum": "30.00", "subtotal": "20.00"}
    assert api.get(f"/v1/reservations/{repriced['reservation_id']}").json()["status"] == "released"
    assert api.coupon("MIN30")["status"] == "active"  # its one use is free again


def test_failed_code_lookups_on_a_session_are_throttled(api: Api) -> None:
    """Guessing codes through the session's coupon route spends the shopper's budget (default 20
    failed lookups a minute): then 429 RATE_LIMITED with Retry-After, even for a code that exists."""
    tote = api.add_product("Tote", "10.00", 5)
    api.create_coupon("REAL10")
    created = new_session(api.publishable, (tote["id"], 1))
    sid, shop = created["session_id"], sealed(api.publishable, created)
    for attempt in range(20):
        assert_error(apply_coupon(shop, sid, f"GUESS{attempt:03d}"), 404, "COUPON_NOT_FOUND")
    limited = apply_coupon(shop, sid, "GUESS999")
    details = assert_error(limited, 429, "RATE_LIMITED")
    assert limited.headers["Retry-After"] == str(details["retry_after"])
    assert_error(apply_coupon(shop, sid, "REAL10"), 429, "RATE_LIMITED")
    assert api.get(f"{SESSIONS}/{sid}").json()["coupon"] is None


# --- hold-inventory --------------------------------------------------------------------------------------


def test_stock_is_held_all_or_nothing_and_others_see_what_is_left(api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    mug = api.add_product("Mug", "4.00", 2)
    first = new_session(api, (tote["id"], 3), (mug["id"], 1))["session_id"]
    held = hold(api, first)
    assert held.status_code == 200, held.text
    inventory = held.json()["inventory_hold"]
    assert inventory["items"] == [{"product_id": tote["id"], "quantity": 3}, {"product_id": mug["id"], "quantity": 1}]
    assert inventory["expires_at"] == held.json()["expires_at"]  # default: the session's expiry
    second = new_session(api, (tote["id"], 3), (mug["id"], 2))["session_id"]
    details = assert_error(hold(api, second), 409, "OUT_OF_STOCK")
    assert details["products"] == [
        {"product_id": tote["id"], "requested": 3, "available": 2},
        {"product_id": mug["id"], "requested": 2, "available": 1},
    ]
    assert (details["product_id"], details["requested"], details["available"]) == (tote["id"], 3, 2)
    assert api.get(f"{SESSIONS}/{second}").json()["inventory_hold"] is None  # nothing held
    # The stock itself is unchanged until an order is placed; the plain checkout sees what is left.
    assert api.stock_of(tote["id"]) == 5
    details = assert_error(
        api.post("/v1/checkout", json={"user_id": 1, "items": lines((tote["id"], 3))}), 409, "OUT_OF_STOCK"
    )
    assert (details["requested"], details["available"]) == (3, 2)
    assert api.post("/v1/checkout", json={"user_id": 1, "items": lines((tote["id"], 2))}).status_code == 201


def test_a_new_hold_replaces_the_previous_and_a_resync_releases_it(api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 4)
    sid = new_session(api, (tote["id"], 3))["session_id"]
    assert hold(api, sid).status_code == 200
    assert hold(api, sid).json()["inventory_hold"]["items"] == [{"product_id": tote["id"], "quantity": 3}]
    short = hold(api, ttl_seconds=60, session_id=new_session(api, (tote["id"], 2))["session_id"])
    assert_error(short, 409, "OUT_OF_STOCK")
    resynced = sync(api, lines((tote["id"], 1)), sid)
    assert resynced.json()["inventory_hold"] is None
    other = new_session(api, (tote["id"], 3))["session_id"]
    assert hold(api, other).status_code == 200


def test_a_hold_lasts_its_ttl_at_most_the_sessions_life(api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 4)
    session = new_session(api, (tote["id"], 1))
    sid = session["session_id"]
    short = hold(api, sid, ttl_seconds=60).json()
    hold_end = timestamp(short["inventory_hold"]["expires_at"])
    assert timedelta(seconds=55) < hold_end - timestamp(short["updated_at"]) <= timedelta(seconds=61)
    longest = hold(api, sid, ttl_seconds=86_400).json()
    assert longest["inventory_hold"]["expires_at"] == longest["expires_at"]


@pytest.mark.parametrize("body", [{"ttl_seconds": 0}, {"ttl_seconds": 86_401}, {"ttl_seconds": "60"}, {"x": 1}])
def test_an_invalid_hold_request_is_a_validation_failure(api: Api, body: dict[str, Any]) -> None:
    tote = api.add_product("Tote", "10.00", 4)
    sid = new_session(api, (tote["id"], 1))["session_id"]
    assert_validation_failed(api.post(f"{SESSIONS}/{sid}/hold-inventory", json=body))


def test_hold_inventory_on_an_unknown_or_completed_session(api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 4)
    assert_error(hold(api, "no-such-session"), 404, "NOT_FOUND")
    sid = new_session(api, (tote["id"], 1))["session_id"]
    assert place(api, sid, next(_users)).status_code == 201
    assert_error(hold(api, sid), 409, "SESSION_COMPLETED")


# --- POST /v1/checkout {session_id, user_id} -----------------------------------------------------------------


def test_the_order_from_a_session_has_the_existing_shape(api: Api, sql: Sql) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    user = next(_users)
    plain = new_session(api, (tote["id"], 2))["session_id"]
    order = place(api, plain, user)
    assert order.status_code == 201, order.text
    assert set(order.json()) == ORDER_FIELDS
    assert (order.json()["subtotal"], order.json()["total"], order.json()["user_id"]) == ("20.00", "20.00", user)
    api.create_coupon("SESS10")
    with_coupon = new_session(api, (tote["id"], 1))["session_id"]
    apply_coupon(api, with_coupon, "SESS10")
    order = place(api, with_coupon, user)
    assert order.status_code == 201, order.text
    assert set(order.json()) == COUPON_ORDER_FIELDS
    assert (order.json()["total"], order.json()["discount_amount"], order.json()["coupon_code"]) == (
        "9.00",
        "1.00",
        "SESS10",
    )
    assert sql(
        "SELECT o.total::text, c.coupon_code, c.redemption_id::text FROM orders o"
        " JOIN order_coupons c ON c.order_id = o.id WHERE o.id = %s",
        order.json()["id"],
    ) == [("9.00", "SESS10", order.json()["redemption_id"])]
    assert api.stock_of(tote["id"]) == 2


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"user_id": 1}, {"items"}),
        ({"user_id": 1, "session_id": "abc", "items": [{"product_id": 1, "quantity": 1}]}, {"items"}),
        ({"user_id": 1, "session_id": "abc", "coupon_code": "SAVE10"}, {"coupon_code"}),
        ({"user_id": 1, "session_id": "not valid"}, {"session_id"}),
        ({"session_id": "abc"}, {"user_id"}),
    ],
)
def test_the_two_checkout_forms_do_not_mix(api: Api, body: dict[str, Any], fields: set[str]) -> None:
    assert assert_validation_failed(api.post("/v1/checkout", json=body)) == fields


def test_checkout_from_an_unknown_session_is_not_found(api: Api) -> None:
    assert assert_error(place(api, "never-synced", 1), 404, "NOT_FOUND") == {"session_id": "never-synced"}


def test_a_session_checks_out_once(api: Api, sql: Sql) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    user = next(_users)
    sid = new_session(api, (tote["id"], 1))["session_id"]
    order = place(api, sid, user).json()
    details = assert_error(place(api, sid, user), 409, "SESSION_COMPLETED")
    assert details == {"session_id": sid, "order_id": order["id"]}
    session = api.get(f"{SESSIONS}/{sid}").json()
    assert (session["status"], session["order_id"]) == ("completed", order["id"])
    assert sql("SELECT count(*) FROM orders WHERE user_id = %s", user) == [(1,)]


def test_items_the_session_does_not_hold_need_available_stock(api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 3)
    unheld = new_session(api, (tote["id"], 2))["session_id"]
    holder = new_session(api, (tote["id"], 2))["session_id"]
    assert hold(api, holder).status_code == 200
    details = assert_error(place(api, unheld, next(_users)), 409, "OUT_OF_STOCK")
    assert details["products"] == [{"product_id": tote["id"], "requested": 2, "available": 1}]
    assert api.get(f"{SESSIONS}/{unheld}").json()["status"] == "open"  # nothing happened
    assert place(api, holder, next(_users)).status_code == 201  # held stock is there for its session
    assert api.stock_of(tote["id"]) == 1


def test_a_coupon_hold_ended_outside_the_session_is_invalid_transition(api: Api, sql: Sql) -> None:
    """The retailer's server may confirm or release a session's hold through /v1/reservations; the
    session's checkout then refuses it (nothing is placed) until the cart is synced again."""
    tote = api.add_product("Tote", "10.00", 5)
    api.create_coupon("OUTSIDE", max_uses=5)
    user = next(_users)
    for action in ("confirm", "release"):
        sid = new_session(api, (tote["id"], 1))["session_id"]
        held = apply_coupon(api, sid, "OUTSIDE").json()["coupon"]
        ended = api.post(f"/v1/reservations/{held['reservation_id']}/{action}")
        assert ended.status_code in (200, 201), ended.text
        details = assert_error(place(api, sid, user), 409, "INVALID_TRANSITION")
        assert details["reservation_id"] == held["reservation_id"]
        assert api.get(f"{SESSIONS}/{sid}").json()["status"] == "open"
        # A sync holds the coupon again; then the order goes through.
        assert sync(api, lines((tote["id"], 1)), sid).json()["coupon"]["code"] == "OUTSIDE"
        assert place(api, sid, user).status_code == 201
    assert sql("SELECT count(*) FROM orders WHERE user_id = %s", user) == [(2,)]


def test_a_session_checkout_replays_under_its_key(api: Api, sql: Sql) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    api.create_coupon("KEYED10")
    user = next(_users)
    sid = new_session(api, (tote["id"], 1))["session_id"]
    apply_coupon(api, sid, "KEYED10")
    key = {"Idempotency-Key": f"pay-{uuid4().hex}"}
    first = place(api, sid, user, headers=key)
    assert first.status_code == 201, first.text
    again = place(api, sid, user, headers=key)
    assert (again.status_code, again.content, again.headers["Idempotent-Replayed"]) == (201, first.content, "true")
    assert_error(place(api, sid, user + 1, headers=key), 409, "IDEMPOTENCY_KEY_REUSED")
    assert_error(place(api, sid, user), 409, "SESSION_COMPLETED")  # without the key: not a retry
    assert sql("SELECT count(*) FROM orders WHERE user_id = %s", user) == [(1,)]
    assert api.coupon("KEYED10")["uses_count"] == 1


@pytest.mark.parametrize("call", ["sync", "coupon", "remove", "hold"])
def test_every_session_call_replays_under_its_key(api: Api, call: str) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    api.create_coupon("REPLAY10")
    sid = new_session(api, (tote["id"], 1))["session_id"]
    apply_coupon(api, sid, "REPLAY10")
    key = {"Idempotency-Key": f"{call}-{uuid4().hex}"}
    path = SESSIONS if call == "sync" else f"{SESSIONS}/{sid}/{'hold-inventory' if call == 'hold' else 'coupon'}"
    bodies: dict[str, tuple[Any, Any]] = {
        "sync": (
            {"session_id": sid, "items": lines((tote["id"], 2))},
            {"session_id": sid, "items": lines((tote["id"], 3))},
        ),
        "coupon": ({"code": "REPLAY10"}, {"code": "REPLAY10", "customer_id": "c"}),
        "hold": ({"ttl_seconds": 60}, {"ttl_seconds": 61}),
        "remove": (None, None),
    }
    body, other = bodies[call]

    def send(payload: Any, path: str = path) -> httpx.Response:
        if call == "remove":
            return api.client.delete(path, headers={**api.headers, **key})
        return api.post(path, json=payload, headers=key)

    first = send(body)
    assert first.status_code in (200, 201), first.text
    again = send(body)
    assert (again.status_code, again.content, again.headers["Idempotent-Replayed"]) == (
        first.status_code,
        first.content,
        "true",
    )
    if call == "remove":  # no body: another route under the same key
        assert_error(api.post(f"{SESSIONS}/{sid}/hold-inventory", headers=key), 409, "IDEMPOTENCY_KEY_REUSED")
    else:
        assert_error(send(other), 409, "IDEMPOTENCY_KEY_REUSED")


# --- the shopper's flow, and an abandoned session ---------------------------------------------------------


def test_a_shopper_syncs_applies_a_coupon_holds_stock_and_pays(api: Api, sql: Sql) -> None:
    scarf = api.add_product("Wool scarf", "45.00", 3)
    mug = api.add_product("Mug", "12.50", 10)
    api.create_coupon("WELCOME20", discount_type="percentage", discount_value="20", max_uses=100)
    user = next(_users)
    storefront = api.publishable  # the shop's pages call with its publishable key
    # The storefront syncs the cart as the shopper fills it, then again when it changes.
    cart = sync(storefront, lines((scarf["id"], 1)), session_id="shopper-cart-1", subtotal="45.00")
    assert cart.status_code == 201, cart.text
    storefront = sealed(storefront, cart.json())  # its later calls send the session's client secret
    cart = sync(storefront, lines((scarf["id"], 2), (mug["id"], 1)), session_id="shopper-cart-1", subtotal="102.50")
    assert cart.status_code == 200, cart.text
    # The shopper types a coupon code.
    applied = api.post(
        f"{SESSIONS}/shopper-cart-1/coupon", json={"code": "welcome20"}, headers={"Idempotency-Key": "c-1"}
    )
    assert applied.status_code == 200, applied.text
    assert (applied.json()["discount_amount"], applied.json()["total"]) == ("20.50", "82.00")
    # On the payment page the storefront holds the stock while the shopper pays.
    held = api.post(
        f"{SESSIONS}/shopper-cart-1/hold-inventory", json={"ttl_seconds": 600}, headers={"Idempotency-Key": "h-1"}
    )
    assert held.status_code == 200, held.text
    assert held.json()["inventory_hold"]["items"] == [
        {"product_id": scarf["id"], "quantity": 2},
        {"product_id": mug["id"], "quantity": 1},
    ]
    # Paid: the shop's server places the order from the session with its secret key (a retry after
    # a timeout would replay it).
    assert_error(place(storefront, "shopper-cart-1", user), 403, "FORBIDDEN")
    paid = place(api, "shopper-cart-1", user, headers={"Idempotency-Key": "pay-1"})
    assert paid.status_code == 201, paid.text
    order = paid.json()
    assert (order["subtotal"], order["discount_amount"], order["total"], order["coupon_code"]) == (
        "102.50",
        "20.50",
        "82.00",
        "WELCOME20",
    )
    # The order, the redemption and the stock.
    assert sql("SELECT user_id, subtotal::text, total::text FROM orders WHERE id = %s", order["id"]) == [
        (user, "102.50", "82.00")
    ]
    session = api.get(f"{SESSIONS}/shopper-cart-1").json()
    assert (session["status"], session["order_id"], session["inventory_hold"]) == ("completed", order["id"], None)
    redeemed = [e for e in api.events("WELCOME20") if e["type"] == "Coupon.Redeemed"]
    assert len(redeemed) == 1
    assert redeemed[0]["data"]["redemption_id"] == order["redemption_id"]
    assert redeemed[0]["data"]["reservation_id"] == applied.json()["coupon"]["reservation_id"]
    reservation = api.get(f"/v1/reservations/{applied.json()['coupon']['reservation_id']}").json()
    assert reservation["status"] == "confirmed"
    assert api.coupon("WELCOME20")["uses_count"] == 1
    assert (api.stock_of(scarf["id"]), api.stock_of(mug["id"])) == (1, 9)


@pytest.fixture(scope="module")
def short_client(e2e_database_url: str) -> Iterator[TestClient]:
    """The same database, served by an app whose sessions last SHORT_TTL seconds."""
    app = create_app(Settings(database_url=e2e_database_url, session_ttl_seconds=SHORT_TTL, run_projections=False))
    with TestClient(app) as client:
        yield client


def wait_until_past(moment: str) -> None:
    end = timestamp(moment)
    while datetime.now(end.tzinfo) <= end + timedelta(milliseconds=50):
        time.sleep(0.05)


def test_an_abandoned_session_gives_its_coupon_use_and_stock_back_when_it_expires(
    app: FastAPI, api: Api, short_client: TestClient, sql: Sql
) -> None:
    shopper = Api(short_client, api.retailer_id, api.publishable_key)
    lamp = api.add_product("Lamp", "30.00", 1)
    api.create_coupon("LASTONE", max_uses=1)
    created = new_session(shopper, (lamp["id"], 1))
    sid, shopper = created["session_id"], sealed(shopper, created)
    assert apply_coupon(shopper, sid, "LASTONE").status_code == 200
    held = hold(shopper, sid)
    assert held.status_code == 200, held.text
    # While the session lives, its coupon use and its lamp are nobody else's.
    rival = new_session(api, (lamp["id"], 1))["session_id"]
    assert_error(apply_coupon(api, rival, "LASTONE"), 422, "USAGE_LIMIT_REACHED")
    assert_error(hold(api, rival), 409, "OUT_OF_STOCK")
    # The shopper leaves. Once the session expires, both come back (nothing had to record it).
    wait_until_past(held.json()["expires_at"])
    abandoned = api.get(f"{SESSIONS}/{sid}").json()
    assert (abandoned["status"], abandoned["inventory_hold"]) == ("expired", None)
    assert apply_coupon(api, rival, "LASTONE").status_code == 200
    assert hold(api, rival).status_code == 200
    # The abandoned session is closed to changes and to checkout.
    details = assert_error(place(api, sid, next(_users)), 422, "SESSION_EXPIRED")
    assert details["session_id"] == sid
    assert_error(apply_coupon(api, sid, "LASTONE"), 422, "SESSION_EXPIRED")
    assert_error(hold(api, sid), 422, "SESSION_EXPIRED")
    assert_error(remove_coupon(api, sid), 422, "SESSION_EXPIRED")
    # The sweeper's chore deletes its ended stock hold and marks it expired.
    chores = app.state.services.chores()
    assert any(getattr(chore, "func", None) is cleanup_expired_sessions for chore in chores)
    made = metrics()
    assert made is not None
    ended_before = made.registry.get_sample_value("coupon_ledger_sweeper_sessions_ended_total") or 0
    holds, expired = cleanup_expired_sessions(app.state.services.pool)
    # Unless the app's own sweeper ran the same chore first: then nothing is left for this call, and
    # the rows checked below are that sweeper's work (a chore that did nothing would leave them as they were).
    assert (holds >= 1 and expired >= 1) or (holds, expired) == (0, 0)
    ended_after = made.registry.get_sample_value("coupon_ledger_sweeper_sessions_ended_total") or 0
    assert ended_after >= ended_before + expired  # counted for /metrics (the app's own sweeper may add more)
    assert sql("SELECT status FROM checkout_sessions WHERE retailer_id = %s AND id = %s", api.retailer_id, sid) == [
        ("expired",)
    ]
    assert sql(
        "SELECT count(*) FROM inventory_holds WHERE retailer_id = %s AND session_id = %s", api.retailer_id, sid
    ) == [(0,)]
    assert place(api, rival, next(_users)).status_code == 201
    assert api.stock_of(lamp["id"]) == 0


def test_an_expired_session_is_started_again_by_a_sync(api: Api, short_client: TestClient) -> None:
    shopper = Api(short_client, api.retailer_id, api.publishable_key)
    tote = api.add_product("Tote", "10.00", 5)
    api.create_coupon("COMEBACK")
    created = new_session(shopper, (tote["id"], 2))
    sid, shopper = created["session_id"], sealed(shopper, created)
    applied = apply_coupon(shopper, sid, "COMEBACK").json()
    wait_until_past(applied["expires_at"])
    revived = sync(api, lines((tote["id"], 2)), sid)
    assert revived.status_code == 200, revived.text
    body = revived.json()
    assert body["status"] == "open"
    assert body["coupon"]["code"] == "COMEBACK"  # held again (the expired hold is not reused)
    assert body["coupon"]["reservation_id"] != applied["coupon"]["reservation_id"]
    assert place(api, sid, next(_users)).status_code == 201


def test_a_coupon_hold_that_expired_under_a_live_session_is_reservation_expired(
    api: Api, short_client: TestClient, sql: Sql
) -> None:
    """The session and its coupon hold end together; if the session outlives its hold anyway (its
    expiry moved by hand here), the checkout refuses the expired hold and places nothing."""
    shopper = Api(short_client, api.retailer_id, api.publishable_key)
    tote = api.add_product("Tote", "10.00", 5)
    api.create_coupon("SHORTHOLD")
    created = new_session(shopper, (tote["id"], 1))
    sid, shopper = created["session_id"], sealed(shopper, created)
    applied = apply_coupon(shopper, sid, "SHORTHOLD").json()
    wait_until_past(applied["expires_at"])
    sql(
        "UPDATE checkout_sessions SET expires_at = now() + interval '1 hour' WHERE retailer_id = %s AND id = %s"
        " RETURNING id",
        api.retailer_id,
        sid,
    )
    user = next(_users)
    details = assert_error(place(api, sid, user), 422, "RESERVATION_EXPIRED")
    assert details["reservation_id"] == applied["coupon"]["reservation_id"]
    assert sql("SELECT count(*) FROM orders WHERE user_id = %s", user) == [(0,)]
    assert api.stock_of(tote["id"]) == 5
