"""Reading an order back: GET /v1/orders/{id}, for orders of both checkouts."""

from __future__ import annotations

import itertools
from typing import Any
from uuid import uuid4

import pytest

from tests.support.http import Api, assert_error

_users = itertools.count(91_001)
DETAIL_FIELDS = {
    "id",
    "user_id",
    "subtotal",
    "total",
    "created_at",
    "items",
    "session_id",
    "coupon_code",
    "discount_amount",
    "redemption_id",
}


def checkout(api: Api, **body: Any) -> dict[str, Any]:
    response = api.post("/v1/checkout", json={"user_id": next(_users), **body})
    assert response.status_code == 201, response.text
    return response.json()


def read(api: Api, order_id: Any) -> dict[str, Any]:
    response = api.get(f"/v1/orders/{order_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == DETAIL_FIELDS
    return body


def test_an_order_without_a_coupon_reads_back_its_totals_and_no_coupon(api: Api) -> None:
    scarf = api.add_product("Scarf", "45.00", 10)
    placed = checkout(api, items=[{"product_id": scarf["id"], "quantity": 2}])
    assert read(api, placed["id"]) == {
        **placed,
        "items": None,  # a cart's lines are not stored: the seed's orders keep their totals
        "session_id": None,
        "coupon_code": None,
        "discount_amount": None,
        "redemption_id": None,
    }


def test_an_order_with_a_coupon_reads_back_its_coupon_and_redemption(api: Api) -> None:
    scarf = api.add_product("Scarf", "45.00", 10)
    api.create_coupon("ORDER10")
    placed = checkout(api, items=[{"product_id": scarf["id"], "quantity": 2}], coupon_code="order10")
    order = read(api, placed["id"])
    assert order == {**placed, "items": None, "session_id": None}
    assert (order["total"], order["coupon_code"], order["discount_amount"]) == ("81.00", "ORDER10", "9.00")
    reversed_ = api.post(f"/v1/redemptions/{order['redemption_id']}/reverse")
    assert reversed_.status_code == 200, reversed_.text  # the redemption named is the order's, and real


def test_an_order_from_a_checkout_session_reads_back_its_lines_and_coupon(api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    mug = api.add_product("Mug", "7.50", 5)
    api.create_coupon("SESSORDER", discount_type="fixed", discount_value="3")
    session_id = f"s-{uuid4().hex[:12]}"
    cart = [{"product_id": tote["id"], "quantity": 2}, {"product_id": mug["id"], "quantity": 1}]
    synced = api.post("/v1/checkout/sessions", json={"session_id": session_id, "items": cart})
    assert synced.status_code == 201, synced.text
    applied = api.post(f"/v1/checkout/sessions/{session_id}/coupon", json={"code": "SESSORDER"})
    assert applied.status_code == 200, applied.text
    placed = checkout(api, session_id=session_id)

    order = read(api, placed["id"])
    assert order == {
        **placed,
        "items": [
            {"product_id": tote["id"], "name": "Tote", "quantity": 2, "unit_price": "10.00"},
            {"product_id": mug["id"], "name": "Mug", "quantity": 1, "unit_price": "7.50"},
        ],
        "session_id": session_id,
    }
    assert (order["subtotal"], order["total"], order["coupon_code"]) == ("27.50", "24.50", "SESSORDER")


def test_another_retailers_order_is_not_found(api: Api, other_api: Api) -> None:
    scarf = api.add_product("Scarf", "45.00", 10)
    placed = checkout(api, items=[{"product_id": scarf["id"], "quantity": 1}])
    details = assert_error(other_api.get(f"/v1/orders/{placed['id']}"), 404, "NOT_FOUND")
    assert details == {"order_id": str(placed["id"])}


@pytest.mark.parametrize(
    ("sent", "order_id"),
    [
        ("999999999999", "999999999999"),
        ("0", "0"),
        ("-1", "-1"),
        ("abc", "abc"),
        ("1.5", "1.5"),
        ("99999999999999999999", "99999999999999999999"),
        ("%20", " "),
    ],
)
def test_a_missing_or_impossible_order_id_is_not_found_naming_it(api: Api, sent: str, order_id: str) -> None:
    details = assert_error(api.get(f"/v1/orders/{sent}"), 404, "NOT_FOUND")
    assert details == {"order_id": order_id}


def test_a_publishable_key_may_not_read_orders(api: Api) -> None:
    scarf = api.add_product("Scarf", "45.00", 10)
    placed = checkout(api, items=[{"product_id": scarf["id"], "quantity": 1}])
    assert_error(api.publishable.get(f"/v1/orders/{placed['id']}"), 403, "FORBIDDEN")
