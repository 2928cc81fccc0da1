"""The existing Cartly checkout (products, orders) and the optional coupon at checkout.

Each test is a new retailer, so its products are its own; orders share the module's database, so
each test also uses its own user id and looks only at those rows.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.http import Api, Sql, assert_error, assert_validation_failed

ORDER_FIELDS = {"id", "user_id", "subtotal", "total", "created_at"}
COUPON_ORDER_FIELDS = ORDER_FIELDS | {"discount_amount", "coupon_code", "redemption_id"}
_user_ids = itertools.count(1001)


@pytest.fixture
def user_id() -> int:
    return next(_user_ids)


def checkout(api: Api, user_id: int, items: list[tuple[int, int]], **extra: Any) -> Any:
    body = {"user_id": user_id, "items": [{"product_id": p, "quantity": q} for p, q in items], **extra}
    return api.post("/v1/checkout", json=body)


def orders_of(sql: Sql, user_id: int) -> list[tuple[Any, ...]]:
    return sql("SELECT id, user_id, subtotal, total FROM orders WHERE user_id = %s ORDER BY id", user_id)


def test_add_product_returns_201_with_the_product(api: Api) -> None:
    response = api.post("/v1/products", json={"name": "Canvas tote", "price": 24, "stock": 100})
    assert response.status_code == 201, response.text
    product = response.json()
    assert set(product) == {"id", "name", "price", "stock"}
    assert isinstance(product["id"], int)
    assert product["name"] == "Canvas tote"
    assert product["price"] == "24.00"
    assert product["stock"] == 100


def test_list_products_includes_every_added_product(api: Api) -> None:
    mug = api.add_product("Ceramic mug", "12.5", 250)
    apron = api.add_product("Linen apron", 39.9, 40)
    response = api.get("/v1/products")
    assert response.status_code == 200
    listed = {p["id"]: p for p in response.json()}
    assert listed[mug["id"]] == {"id": mug["id"], "name": "Ceramic mug", "price": "12.50", "stock": 250}
    assert listed[apron["id"]] == {"id": apron["id"], "name": "Linen apron", "price": "39.90", "stock": 40}
    ids = [p["id"] for p in response.json()]
    assert ids == sorted(ids)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"price": "1", "stock": 1}, "name"),
        ({"name": "x", "price": "-1", "stock": 1}, "price"),
        ({"name": "x", "price": "1.999", "stock": 1}, "price"),
        ({"name": "x", "price": "NaN", "stock": 1}, "price"),
        ({"name": "x", "price": "1", "stock": -1}, "stock"),
        ({"name": "x", "price": "1", "stock": 1, "retailer": "me"}, "retailer"),
    ],
)
def test_an_invalid_product_is_a_validation_failure(api: Api, body: dict[str, Any], field: str) -> None:
    assert field in assert_validation_failed(api.post("/v1/products", json=body))


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/products", {"name": "x", "price": "1", "stock": False}, "stock"),
        ("/v1/products", {"name": "x", "price": "1", "stock": True}, "stock"),
        ("/v1/products", {"name": "x", "price": "1", "stock": "5"}, "stock"),
        ("/v1/products", {"name": "x", "price": "1", "stock": 5.5}, "stock"),
        ("/v1/checkout", {"user_id": True, "items": [{"product_id": 1, "quantity": 1}]}, "user_id"),
        ("/v1/checkout", {"user_id": "7", "items": [{"product_id": 1, "quantity": 1}]}, "user_id"),
        ("/v1/checkout", {"user_id": 1, "items": [{"product_id": True, "quantity": 1}]}, "items.0.product_id"),
        ("/v1/checkout", {"user_id": 1, "items": [{"product_id": 1, "quantity": True}]}, "items.0.quantity"),
        ("/v1/checkout", {"user_id": 1, "items": [{"product_id": 1, "quantity": 1.5}]}, "items.0.quantity"),
    ],
)
def test_integer_fields_of_products_and_checkouts_take_only_json_integers(
    api: Api, sql: Sql, path: str, body: dict[str, Any], field: str
) -> None:
    """`false` is not 0 and `true` is not 1: a boolean (or a string, or a number with a fraction) is a 422, and
    nothing is written."""
    product = api.add_product("Strict", "1.00", 3)
    assert assert_validation_failed(api.post(path, json=body)) == {field}
    assert api.get("/v1/products").json() == [product]
    assert sql("SELECT count(*) FROM orders WHERE retailer_id = %s", api.retailer_id) == [(0,)]


def test_checkout_response_without_a_coupon_never_changes(api: Api, sql: Sql, user_id: int) -> None:
    tote = api.add_product("Tote", "10.50", 5)
    mug = api.add_product("Mug", "4.25", 10)
    response = checkout(api, user_id, [(tote["id"], 2), (mug["id"], 1)])
    assert response.status_code == 201, response.text
    order = response.json()
    assert set(order) == ORDER_FIELDS  # exactly these keys: no coupon fields, nothing new
    assert isinstance(order["id"], int)
    assert order["user_id"] == user_id
    assert order["subtotal"] == "25.25"
    assert order["total"] == "25.25"
    assert datetime.fromisoformat(order["created_at"]).tzinfo is not None
    assert orders_of(sql, user_id) == [(order["id"], user_id, Decimal("25.25"), Decimal("25.25"))]


def test_checkout_decrements_stock_by_the_quantities_ordered(api: Api, user_id: int) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    mug = api.add_product("Mug", "2.00", 10)
    assert checkout(api, user_id, [(tote["id"], 2), (mug["id"], 10)]).status_code == 201
    assert api.stock_of(tote["id"]) == 3
    assert api.stock_of(mug["id"]) == 0


def test_checkout_with_a_coupon_adds_exactly_the_coupon_fields_and_discounts_the_total(
    api: Api, sql: Sql, user_id: int
) -> None:
    api.create_coupon("CART20", discount_value="20")
    lamp = api.add_product("Lamp", "25.00", 10)
    response = checkout(api, user_id, [(lamp["id"], 2)], coupon_code=" cart20 ")
    assert response.status_code == 201, response.text
    order = response.json()
    assert set(order) == COUPON_ORDER_FIELDS
    assert order["user_id"] == user_id
    assert order["subtotal"] == "50.00"
    assert order["discount_amount"] == "10.00"
    assert order["total"] == "40.00"
    assert order["coupon_code"] == "CART20"
    assert len(order["redemption_id"]) == 36
    assert api.stock_of(lamp["id"]) == 8
    assert orders_of(sql, user_id) == [(order["id"], user_id, Decimal("50.00"), Decimal("40.00"))]

    assert api.coupon("CART20")["uses_count"] == 1
    redeemed = api.events("CART20")[-1]
    assert redeemed["type"] == "Coupon.Redeemed"
    assert redeemed["data"]["order_id"] == str(order["id"])
    assert redeemed["data"]["redemption_id"] == order["redemption_id"]
    assert redeemed["data"]["discount_amount"] == "10.00"


def test_a_fixed_coupon_larger_than_the_order_makes_the_total_zero(api: Api, user_id: int) -> None:
    api.create_coupon("BIGFIX", discount_type="fixed", discount_value="100")
    pen = api.add_product("Pen", "3.50", 10)
    order = checkout(api, user_id, [(pen["id"], 2)], coupon_code="BIGFIX").json()
    assert (order["subtotal"], order["discount_amount"], order["total"]) == ("7.00", "7.00", "0.00")


def test_a_coupon_scoped_to_some_products_discounts_only_their_lines_at_checkout(
    api: Api, sql: Sql, user_id: int
) -> None:
    lamp = api.add_product("Lamp", "25.00", 10)
    pen = api.add_product("Pen", "3.50", 10)
    api.create_coupon("LAMPS10", discount_value="10", scope={"product_ids": [lamp["id"]]})
    order = checkout(api, user_id, [(lamp["id"], 2), (pen["id"], 2)], coupon_code="LAMPS10").json()
    # 10% of the lamps' 50.00 only; the pens' 7.00 are not discounted.
    assert (order["subtotal"], order["discount_amount"], order["total"]) == ("57.00", "5.00", "52.00")

    response = checkout(api, user_id, [(pen["id"], 1)], coupon_code="LAMPS10")
    assert assert_error(response, 422, "COUPON_NOT_APPLICABLE") == {"reason": "no_eligible_items"}
    assert api.stock_of(pen["id"]) == 8
    assert api.coupon("LAMPS10")["uses_count"] == 1


def _assert_nothing_happened(api: Api, sql: Sql, user_id: int, product_id: int, stock: int) -> None:
    assert orders_of(sql, user_id) == []
    assert api.stock_of(product_id) == stock


def test_a_coupon_below_its_minimum_at_checkout_fails_without_an_order_or_stock_change(
    api: Api, sql: Sql, user_id: int
) -> None:
    api.create_coupon("MIN100", min_order_value="100")
    vase = api.add_product("Vase", "30.00", 4)
    response = checkout(api, user_id, [(vase["id"], 1)], coupon_code="MIN100")
    details = assert_error(response, 422, "MIN_ORDER_NOT_MET")
    assert details == {"required_minimum": "100.00", "subtotal": "30.00"}
    _assert_nothing_happened(api, sql, user_id, vase["id"], 4)
    assert api.coupon("MIN100")["uses_count"] == 0
    assert [e["type"] for e in api.events("MIN100")] == ["Coupon.Created"]
    assert sql("SELECT count(*) FROM order_coupons WHERE retailer_id = %s", api.retailer_id) == [(0,)]


@pytest.mark.parametrize(
    ("setup", "status", "code"),
    [
        ({"is_active": False}, 422, "COUPON_INACTIVE"),
        ({"expires_at": "2000-01-01T00:00:00Z"}, 422, "COUPON_EXPIRED"),
    ],
)
def test_a_coupon_that_cannot_be_used_fails_checkout_without_an_order(
    api: Api, sql: Sql, user_id: int, setup: dict[str, Any], status: int, code: str
) -> None:
    api.create_coupon("BADCART", **setup)
    bowl = api.add_product("Bowl", "30.00", 4)
    assert_error(checkout(api, user_id, [(bowl["id"], 1)], coupon_code="BADCART"), status, code)
    _assert_nothing_happened(api, sql, user_id, bowl["id"], 4)


def test_a_coupon_at_its_usage_limit_fails_checkout_without_an_order(api: Api, sql: Sql, user_id: int) -> None:
    api.create_coupon("ONEUSE", max_uses=1)
    cup = api.add_product("Cup", "5.00", 10)
    assert checkout(api, user_id, [(cup["id"], 1)], coupon_code="ONEUSE").status_code == 201
    assert_error(checkout(api, user_id, [(cup["id"], 1)], coupon_code="ONEUSE"), 422, "USAGE_LIMIT_REACHED")
    assert len(orders_of(sql, user_id)) == 1
    assert api.stock_of(cup["id"]) == 9


def test_an_unknown_coupon_fails_checkout_without_an_order(api: Api, sql: Sql, user_id: int) -> None:
    plate = api.add_product("Plate", "8.00", 3)
    assert_error(checkout(api, user_id, [(plate["id"], 1)], coupon_code="NOPE99"), 404, "COUPON_NOT_FOUND")
    _assert_nothing_happened(api, sql, user_id, plate["id"], 3)


def test_another_retailers_coupon_fails_checkout_without_an_order(
    api: Api, other_api: Api, sql: Sql, user_id: int
) -> None:
    other_api.create_coupon("THEIRCART")
    plate = api.add_product("Plate", "8.00", 3)
    assert_error(checkout(api, user_id, [(plate["id"], 1)], coupon_code="THEIRCART"), 404, "COUPON_NOT_FOUND")
    _assert_nothing_happened(api, sql, user_id, plate["id"], 3)
    assert other_api.coupon("THEIRCART")["uses_count"] == 0


def test_ordering_more_than_the_stock_is_out_of_stock_and_changes_nothing(api: Api, sql: Sql, user_id: int) -> None:
    api.create_coupon("STOCKCPN")
    rare = api.add_product("Rare print", "90.00", 2)
    common = api.add_product("Postcard", "1.00", 50)
    response = checkout(api, user_id, [(common["id"], 5), (rare["id"], 3)], coupon_code="STOCKCPN")
    details = assert_error(response, 409, "OUT_OF_STOCK")
    assert details == {"product_id": rare["id"], "requested": 3, "available": 2}
    _assert_nothing_happened(api, sql, user_id, rare["id"], 2)
    assert api.stock_of(common["id"]) == 50
    assert api.coupon("STOCKCPN")["uses_count"] == 0


def test_ordering_exactly_the_stock_succeeds(api: Api, user_id: int) -> None:
    last = api.add_product("Last one", "9.99", 1)
    assert checkout(api, user_id, [(last["id"], 1)]).status_code == 201
    assert api.stock_of(last["id"]) == 0
    assert_error(checkout(api, user_id, [(last["id"], 1)]), 409, "OUT_OF_STOCK")


def test_an_unknown_product_is_not_found_and_changes_nothing(api: Api, sql: Sql, user_id: int) -> None:
    real = api.add_product("Real", "1.00", 5)
    response = checkout(api, user_id, [(real["id"], 1), (999_999_999, 1)])
    details = assert_error(response, 404, "NOT_FOUND")
    assert details["product_ids"] == [999_999_999]
    _assert_nothing_happened(api, sql, user_id, real["id"], 5)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"items": [{"product_id": 1, "quantity": 1}]}, "user_id"),
        ({"user_id": 1}, "items"),
        ({"user_id": 1, "items": []}, "items"),
        ({"user_id": 1, "items": [{"product_id": 1, "quantity": 0}]}, "items.0.quantity"),
        ({"user_id": 1, "items": [{"product_id": 1}]}, "items.0.quantity"),
        ({"user_id": 1, "items": [{"product_id": 1, "quantity": 1}], "coupon_code": ""}, "coupon_code"),
        ({"user_id": 1, "items": [{"product_id": 1, "quantity": 1}], "discount": "5"}, "discount"),
    ],
)
def test_an_invalid_checkout_is_a_validation_failure(api: Api, body: dict[str, Any], field: str) -> None:
    assert field in assert_validation_failed(api.post("/v1/checkout", json=body))


def test_a_failure_after_the_coupon_check_consumes_no_use_and_writes_no_order(
    api: Api, app: FastAPI, sql: Sql, user_id: int, e2e_database_url: str
) -> None:
    def ddl(statement: str) -> None:
        with psycopg.connect(e2e_database_url, autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    # A real failure inside the database, after the coupon has been checked and redeemed in the
    # batch: a trigger refuses this user's order rows.
    ddl(
        "CREATE OR REPLACE FUNCTION refuse_order() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" BEGIN IF NEW.user_id = {user_id} THEN RAISE EXCEPTION 'order refused by the test'; END IF;"
        " RETURN NEW; END $$"
    )
    ddl("CREATE TRIGGER refuse_order BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION refuse_order()")
    api.create_coupon("ATOMIC1", max_uses=1)
    lamp = api.add_product("Lamp", "40.00", 3)
    try:
        quiet = TestClient(app, raise_server_exceptions=False)  # services were started by `client`
        body = {"user_id": user_id, "items": [{"product_id": lamp["id"], "quantity": 2}], "coupon_code": "ATOMIC1"}
        response = quiet.post("/v1/checkout", json=body, headers=api.headers)
        assert_error(response, 500, "INTERNAL_ERROR")
        _assert_nothing_happened(api, sql, user_id, lamp["id"], 3)
        assert api.coupon("ATOMIC1")["uses_count"] == 0
        assert [e["type"] for e in api.events("ATOMIC1")] == ["Coupon.Created"]
        assert sql("SELECT count(*) FROM order_coupons WHERE coupon_code = 'ATOMIC1'") == [(0,)]
    finally:
        ddl("DROP TRIGGER refuse_order ON orders")
    # The use was never consumed: with the failure gone, the same checkout succeeds (max_uses=1).
    response = checkout(api, user_id, [(lamp["id"], 2)], coupon_code="ATOMIC1")
    assert response.status_code == 201, response.text
    assert api.stock_of(lamp["id"]) == 1
    assert api.coupon("ATOMIC1")["uses_count"] == 1
