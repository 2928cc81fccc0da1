"""Every coupon rule over HTTP: the terms, statuses, limits, types and scopes on
validate and apply, the validation order of DESIGN section 3, and each new error code with its
status and details. (PATCH, DELETE, transitions and reversals: test_coupon_changes_http.py.)"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest

from tests.support.http import PAST, Api, Sql, assert_error, assert_validation_failed, future


def validate(api: Api, code: str, **body: Any) -> httpx.Response:
    return api.post("/v1/coupons/validate", json={"code": code, **body})


def apply(api: Api, code: str, key: str | None = None, **body: Any) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else None
    return api.post("/v1/coupons/apply", json={"code": code, **body}, headers=headers)


def patch(api: Api, code: str, body: Any) -> httpx.Response:
    return api.client.patch(f"/v1/coupons/{code}", json=body, headers=api.headers)


def line(product_id: Any, quantity: Any, unit_price: str, **extra: Any) -> dict[str, Any]:
    return {"product_id": product_id, "quantity": quantity, "unit_price": unit_price, **extra}


def same_instant(a: str, b: str) -> bool:
    return datetime.fromisoformat(a) == datetime.fromisoformat(b)


# ---- the new terms on create, GET and the list -------------------------------------------------


def test_a_coupon_with_every_new_term_is_created_and_read_back_the_same_way_from_get_and_the_list(api: Api) -> None:
    starts = future()
    body = {
        "code": "ALLTERMS",
        "discount_type": "percentage",
        "discount_value": "20",
        "min_order_value": "30",
        "max_discount_amount": 15,
        "starts_at": PAST,
        "expires_at": starts,
        "max_uses": 10,
        "max_uses_per_customer": 2,
        "scope": {"product_ids": ["sku-2", 17], "category_ids": ["shoes"], "excluded_product_ids": ["sku-9"]},
        "public": True,
    }
    response = api.post("/v1/coupons", json=body)
    assert response.status_code == 201, response.text
    coupon = response.json()
    assert coupon["max_discount_amount"] == "15.00"
    assert same_instant(coupon["starts_at"], PAST) and coupon["starts_at"].endswith("Z")
    assert same_instant(coupon["expires_at"], starts)
    assert coupon["max_uses_per_customer"] == 2
    assert coupon["scope"] == {
        "product_ids": ["17", "sku-2"],  # ids are text: an integer is taken as its decimal string
        "variant_ids": [],
        "category_ids": ["shoes"],
        "excluded_product_ids": ["sku-9"],
        "excluded_category_ids": [],
    }
    assert coupon["public"] is True
    assert coupon["campaign_id"] is None
    assert coupon["status"] == "active"
    assert api.coupon("ALLTERMS") == coupon
    listed = api.get("/v1/coupons").json()["data"]
    assert listed == [coupon]  # the read model carries every field, as the aggregate does


def test_the_new_terms_default_to_none_and_public_to_false(api: Api) -> None:
    coupon = api.create_coupon("PLAIN1")
    assert {
        k: coupon[k] for k in ("max_discount_amount", "starts_at", "max_uses_per_customer", "scope")
    } == dict.fromkeys(("max_discount_amount", "starts_at", "max_uses_per_customer", "scope"))
    assert coupon["public"] is False
    assert coupon["campaign_id"] is None


def test_an_empty_scope_restricts_nothing_and_is_no_scope(api: Api) -> None:
    assert api.create_coupon("EMPTYSCOPE", scope={})["scope"] is None
    assert api.create_coupon("EMPTYLISTS", scope={"product_ids": []})["scope"] is None


VALID = {"code": "BADTERMS", "discount_type": "percentage", "discount_value": "10"}
INVALID_TERMS: dict[str, tuple[dict[str, Any], str]] = {
    "free_shipping with a value": (
        {**VALID, "discount_type": "free_shipping", "discount_value": "5"},
        "discount_value",
    ),
    "free_shipping with a zero value": (
        {**VALID, "discount_type": "free_shipping", "discount_value": "0"},
        "discount_value",
    ),
    "fixed without a value": ({"code": "X-1", "discount_type": "fixed"}, "discount_value"),
    "cap on a fixed coupon": (
        {**VALID, "discount_type": "fixed", "discount_value": "5", "max_discount_amount": "2"},
        "max_discount_amount",
    ),
    "cap on free shipping": (
        {"code": "X-1", "discount_type": "free_shipping", "max_discount_amount": "2"},
        "max_discount_amount",
    ),
    "zero cap": ({**VALID, "max_discount_amount": "0"}, "max_discount_amount"),
    "cap with three decimals": ({**VALID, "max_discount_amount": "1.001"}, "max_discount_amount"),
    "per-customer zero": ({**VALID, "max_uses_per_customer": 0}, "max_uses_per_customer"),
    "per-customer over int32": ({**VALID, "max_uses_per_customer": 2**31}, "max_uses_per_customer"),
    "per-customer as text": ({**VALID, "max_uses_per_customer": "1"}, "max_uses_per_customer"),
    "expiry before start": (
        {**VALID, "starts_at": "2030-01-02T00:00:00Z", "expires_at": "2030-01-01T00:00:00Z"},
        "expires_at",
    ),
    "expiry at start": (
        {**VALID, "starts_at": "2030-01-01T00:00:00Z", "expires_at": "2030-01-01T00:00:00Z"},
        "expires_at",
    ),
    "bad start": ({**VALID, "starts_at": "soon"}, "starts_at"),
    "public not bool": ({**VALID, "public": "maybe"}, "public"),
    "scope not an object": ({**VALID, "scope": ["sku-1"]}, "scope"),
    "scope unknown key": ({**VALID, "scope": {"brand_ids": ["x"]}}, "scope.brand_ids"),
    "scope id empty": ({**VALID, "scope": {"product_ids": [""]}}, "scope.product_ids.0"),
    "scope id too long": ({**VALID, "scope": {"product_ids": ["x" * 101]}}, "scope.product_ids.0"),
    "scope id with NUL": ({**VALID, "scope": {"category_ids": ["a\x00b"]}}, "scope.category_ids.0"),
    "scope id boolean": ({**VALID, "scope": {"variant_ids": [True]}}, "scope.variant_ids.0"),
    "scope id fraction": ({**VALID, "scope": {"variant_ids": [1.5]}}, "scope.variant_ids.0"),
    "scope id object": ({**VALID, "scope": {"variant_ids": [{"id": 1}]}}, "scope.variant_ids.0"),
    "scope id beyond 2**53": ({**VALID, "scope": {"product_ids": [2**53]}}, "scope.product_ids.0"),
    "scope list too long": ({**VALID, "scope": {"excluded_category_ids": ["c"] * 1001}}, "scope.excluded_category_ids"),
    "discount type unknown": ({**VALID, "discount_type": "bogo"}, "discount_type"),
}


@pytest.mark.parametrize(("body", "field"), INVALID_TERMS.values(), ids=INVALID_TERMS.keys())
def test_invalid_new_terms_are_a_validation_failure_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    assert field in assert_validation_failed(api.post("/v1/coupons", json=body))
    assert api.list_codes() == []


def test_a_scope_of_1000_ids_per_list_is_accepted(api: Api) -> None:
    ids = [f"sku-{i}" for i in range(1000)]
    coupon = api.create_coupon("BIGSCOPE", scope={"product_ids": ids, "excluded_category_ids": list(range(1000))})
    assert len(coupon["scope"]["product_ids"]) == 1000
    assert len(coupon["scope"]["excluded_category_ids"]) == 1000


# ---- status: derived when read, and a list filter ------------------------------------------------


def test_each_status_is_derived_and_filters_the_list(api: Api) -> None:
    api.create_coupon("S-ACTIVE")
    api.create_coupon("S-INACTIVE", is_active=False)  # the platform spec's initial state
    api.create_coupon("S-SCHEDULED", starts_at=future())
    api.create_coupon("S-TIMEEXP", expires_at=PAST)
    api.create_coupon("S-COUNTEXP", max_uses=1)
    assert apply(api, "S-COUNTEXP", subtotal="10").status_code == 201
    expected = {
        "active": "S-ACTIVE",
        "inactive": "S-INACTIVE",
        "scheduled": "S-SCHEDULED",
        "time_expired": "S-TIMEEXP",
        "count_expired": "S-COUNTEXP",
    }
    for status, code in expected.items():
        assert api.coupon(code)["status"] == status
        assert api.list_codes(status=status) == [code]
    assert_validation_failed(api.get("/v1/coupons", params={"status": "expired"}))


def test_an_inactive_coupon_created_so_is_refused_until_activated(api: Api) -> None:
    api.create_coupon("STARTOFF", is_active=False)
    assert_error(validate(api, "STARTOFF", subtotal="10"), 422, "COUPON_INACTIVE")
    assert api.post("/v1/coupons/STARTOFF/activate").json()["status"] == "active"
    assert validate(api, "STARTOFF", subtotal="10").status_code == 200


def test_a_scheduled_coupon_is_not_started_until_starts_at(api: Api) -> None:
    starts = future()
    api.create_coupon("LATER1", starts_at=starts)
    for response in (validate(api, "LATER1", subtotal="10"), apply(api, "LATER1", subtotal="10")):
        details = assert_error(response, 422, "COUPON_NOT_STARTED")
        assert set(details) == {"starts_at"} and same_instant(details["starts_at"], starts)
    assert api.coupon("LATER1")["uses_count"] == 0
    patched = patch(api, "LATER1", {"starts_at": PAST})
    assert patched.json()["status"] == "active"
    assert apply(api, "LATER1", subtotal="10").status_code == 201


def test_the_list_filters_by_campaign_id(api: Api) -> None:
    api.create_coupon("NOCAMPAIGN")
    assert api.list_codes(campaign_id=str(uuid4())) == []
    assert api.list_codes() == ["NOCAMPAIGN"]
    assert assert_validation_failed(api.get("/v1/coupons", params={"campaign_id": "not-a-uuid"})) == {"campaign_id"}


# ---- types: free shipping, the cap --------------------------------------------------------------


def test_free_shipping_discounts_the_shipping_amount_and_says_so(api: Api) -> None:
    coupon = api.create_coupon("SHIPFREE", discount_type="free_shipping", discount_value=None)
    assert coupon["discount_type"] == "free_shipping"
    assert coupon["discount_value"] is None  # its discount is the request's shipping
    quote = validate(api, "SHIPFREE", subtotal="60", shipping_amount="4.90").json()
    assert quote == {
        "valid": True,
        "code": "SHIPFREE",
        "original_subtotal": "60.00",
        "discount_amount": "4.90",
        "final_total": "55.10",
        "free_shipping": True,
    }
    applied = apply(api, "SHIPFREE", subtotal="60", shipping_amount=4.9)
    assert applied.status_code == 201, applied.text
    assert {k: applied.json()[k] for k in ("discount_amount", "final_total", "free_shipping")} == {
        "discount_amount": "4.90",
        "final_total": "55.10",
        "free_shipping": True,
    }
    assert api.coupon("SHIPFREE")["uses_count"] == 1


def test_free_shipping_without_a_shipping_amount_discounts_nothing(api: Api) -> None:
    api.post("/v1/coupons", json={"code": "SHIPFREE2", "discount_type": "free_shipping"})
    quote = validate(api, "SHIPFREE2", subtotal="60").json()
    assert (quote["discount_amount"], quote["final_total"], quote["free_shipping"]) == ("0.00", "60.00", True)


def test_other_types_ignore_the_shipping_amount(api: Api) -> None:
    api.create_coupon("PCT-SHIP", discount_value="10")
    quote = validate(api, "PCT-SHIP", subtotal="50", shipping_amount="5").json()
    assert (quote["discount_amount"], quote["free_shipping"]) == ("5.00", False)


@pytest.mark.parametrize(
    ("subtotal", "discount"),
    [("100", "20.00"), ("150", "30.00"), ("150.05", "30.00"), ("1000", "30.00")],
)
def test_max_discount_amount_caps_a_percentage(api: Api, subtotal: str, discount: str) -> None:
    api.create_coupon("CAPPED", discount_value="20", max_discount_amount="30")
    assert validate(api, "CAPPED", subtotal=subtotal).json()["discount_amount"] == discount
    assert apply(api, "CAPPED", subtotal=subtotal).json()["discount_amount"] == discount


# ---- scopes and items ------------------------------------------------------------------------------


SHOES = line("sku-1", 2, "40.00", category_id="shoes")  # 80.00
SHIRT = line("sku-2", 1, "30.00", category_id="shirts", variant_id="sku-2-red")  # 30.00
SALE = line("sku-9", 1, "10.00", category_id="shoes")  # 10.00, excluded by product


def test_with_items_the_subtotal_is_their_sum(api: Api) -> None:
    api.create_coupon("ITEMS1", discount_value="10")
    quote = validate(api, "ITEMS1", items=[SHOES, SHIRT]).json()
    assert (quote["original_subtotal"], quote["discount_amount"], quote["final_total"]) == ("110.00", "11.00", "99.00")
    same = validate(api, "ITEMS1", items=[SHOES, SHIRT], subtotal="110.00").json()
    assert same == quote


def test_a_subtotal_that_differs_from_the_items_sum_is_a_subtotal_mismatch_naming_both(api: Api) -> None:
    api.create_coupon("ITEMS2")
    for response in (
        validate(api, "ITEMS2", items=[SHOES], subtotal="79.99"),
        apply(api, "ITEMS2", items=[SHOES], subtotal="79.99"),
    ):
        details = assert_error(response, 422, "SUBTOTAL_MISMATCH")
        assert details == {"subtotal": "79.99", "items_subtotal": "80.00"}
    assert api.coupon("ITEMS2")["uses_count"] == 0


def test_an_order_without_subtotal_or_items_is_a_validation_failure_naming_subtotal(api: Api) -> None:
    api.create_coupon("ITEMS3")
    assert assert_validation_failed(validate(api, "ITEMS3")) == {"subtotal"}
    assert assert_validation_failed(apply(api, "ITEMS3")) == {"subtotal"}
    assert assert_validation_failed(validate(api, "ITEMS3", subtotal=None)) == {"subtotal"}


INVALID_ORDERS: dict[str, tuple[dict[str, Any], str]] = {
    "no lines": ({"items": []}, "items"),
    "101 lines": ({"items": [line("p", 1, "1.00")] * 101}, "items"),
    "quantity 0": ({"items": [line("p", 0, "1.00")]}, "items.0.quantity"),
    "quantity 10001": ({"items": [line("p", 10_001, "1.00")]}, "items.0.quantity"),
    "quantity as text": ({"items": [line("p", "2", "1.00")]}, "items.0.quantity"),
    "negative price": ({"items": [line("p", 1, "-1.00")]}, "items.0.unit_price"),
    "price with three decimals": ({"items": [line("p", 1, "1.001")]}, "items.0.unit_price"),
    "no product": ({"items": [{"quantity": 1, "unit_price": "1.00"}]}, "items.0.product_id"),
    "empty product id": ({"items": [line("", 1, "1.00")]}, "items.0.product_id"),
    "unknown line field": ({"items": [line("p", 1, "1.00", colour="red")]}, "items.0.colour"),
    "lines over the largest amount": ({"items": [line("p", 10_000, "999999999999.99")]}, "items"),
    "negative shipping": ({"subtotal": "1", "shipping_amount": "-1"}, "shipping_amount"),
    "empty customer id": ({"subtotal": "1", "customer_id": ""}, "customer_id"),
    "customer id too long": ({"subtotal": "1", "customer_id": "c" * 101}, "customer_id"),
    "customer id with NUL": ({"subtotal": "1", "customer_id": "c\x00"}, "customer_id"),
    "customer id boolean": ({"subtotal": "1", "customer_id": False}, "customer_id"),
}


@pytest.mark.parametrize(("body", "field"), INVALID_ORDERS.values(), ids=INVALID_ORDERS.keys())
@pytest.mark.parametrize("operation", ["validate", "apply"])
def test_an_invalid_order_is_a_validation_failure_naming_the_field(
    api: Api, operation: str, body: dict[str, Any], field: str
) -> None:
    api.create_coupon("ORDERS1")
    assert field in assert_validation_failed(api.post(f"/v1/coupons/{operation}", json={"code": "ORDERS1", **body}))
    assert api.coupon("ORDERS1")["uses_count"] == 0


def test_a_percentage_with_a_scope_discounts_the_eligible_lines_only(api: Api) -> None:
    api.create_coupon(
        "SHOES20", discount_value="20", scope={"category_ids": ["shoes"], "excluded_product_ids": ["sku-9"]}
    )
    quote = validate(api, "SHOES20", items=[SHOES, SHIRT, SALE]).json()
    # 20 % of the shoes (80.00); the shirt is out of scope, the sale item excluded.
    assert (quote["original_subtotal"], quote["discount_amount"], quote["final_total"]) == ("120.00", "16.00", "104.00")
    applied = apply(api, "SHOES20", items=[SHOES, SHIRT, SALE])
    assert applied.status_code == 201, applied.text
    assert applied.json()["discount_amount"] == "16.00"


def test_a_fixed_discount_with_a_scope_is_capped_at_the_eligible_lines(api: Api) -> None:
    api.create_coupon("SHIRT50", discount_type="fixed", discount_value="50", scope={"variant_ids": ["sku-2-red"]})
    quote = validate(api, "SHIRT50", items=[SHOES, SHIRT]).json()
    assert (quote["discount_amount"], quote["final_total"]) == ("30.00", "80.00")


def test_a_scope_matches_products_given_as_integers_or_text(api: Api) -> None:
    api.create_coupon("NUMERIC", discount_value="50", scope={"product_ids": [42]})
    quote = validate(api, "NUMERIC", items=[line("42", 1, "10.00"), line(7, 1, "10.00")]).json()
    assert quote["discount_amount"] == "5.00"


def test_the_minimum_order_applies_to_the_whole_subtotal(api: Api) -> None:
    api.create_coupon("MIN100", discount_value="10", min_order_value="100", scope={"category_ids": ["shirts"]})
    # The shirt alone (30.00) is under the minimum, the order (110.00) is not.
    assert validate(api, "MIN100", items=[SHOES, SHIRT]).json()["discount_amount"] == "3.00"
    details = assert_error(validate(api, "MIN100", items=[SHIRT]), 422, "MIN_ORDER_NOT_MET")
    assert details == {"required_minimum": "100.00", "subtotal": "30.00"}


@pytest.mark.parametrize(
    ("scope", "items", "details"),
    [
        ({"category_ids": ["hats"]}, [SHOES, SHIRT], {"reason": "no_eligible_items"}),
        ({"excluded_product_ids": ["sku-9"]}, [SALE], {"reason": "product_excluded", "product_ids": ["sku-9"]}),
        (
            {"excluded_category_ids": ["shoes"]},
            [SHOES, SALE],
            {"reason": "category_excluded", "product_ids": ["sku-1", "sku-9"], "category_ids": ["shoes"]},
        ),
    ],
    ids=["no_eligible_items", "product_excluded", "category_excluded"],
)
def test_a_scope_nothing_matches_is_not_applicable_with_the_reason(
    api: Api, scope: dict[str, Any], items: list[dict[str, Any]], details: dict[str, Any]
) -> None:
    api.create_coupon("SCOPED1", scope=scope)
    for response in (validate(api, "SCOPED1", items=items), apply(api, "SCOPED1", items=items)):
        assert assert_error(response, 422, "COUPON_NOT_APPLICABLE") == details
    assert api.coupon("SCOPED1")["uses_count"] == 0


def test_a_scoped_coupon_without_items_is_not_applicable(api: Api) -> None:
    api.create_coupon("SCOPED2", scope={"product_ids": ["sku-1"]})
    response = validate(api, "SCOPED2", subtotal="100")
    assert assert_error(response, 422, "COUPON_NOT_APPLICABLE") == {"reason": "no_eligible_items"}
    assert "items" in response.json()["error"]["message"]


# ---- per-customer limit ------------------------------------------------------------------------------


def test_a_per_customer_limit_needs_a_customer_id(api: Api) -> None:
    api.create_coupon("ONCEEACH", max_uses_per_customer=1)
    for response in (validate(api, "ONCEEACH", subtotal="10"), apply(api, "ONCEEACH", subtotal="10")):
        assert assert_error(response, 422, "CUSTOMER_ID_REQUIRED") == {"max_uses_per_customer": 1}
    assert api.coupon("ONCEEACH")["uses_count"] == 0


def test_a_per_customer_limit_counts_each_customer_apart(api: Api) -> None:
    api.create_coupon("TWICEEACH", max_uses_per_customer=2)
    for _ in range(2):
        assert apply(api, "TWICEEACH", subtotal="10", customer_id="alice").status_code == 201
    for response in (
        validate(api, "TWICEEACH", subtotal="10", customer_id="alice"),
        apply(api, "TWICEEACH", subtotal="10", customer_id="alice"),
    ):
        details = assert_error(response, 422, "CUSTOMER_LIMIT_REACHED")
        assert details == {"customer_id": "alice", "max_uses_per_customer": 2, "uses": 2}
    assert apply(api, "TWICEEACH", subtotal="10", customer_id="bob").status_code == 201
    assert api.coupon("TWICEEACH")["uses_count"] == 3


def test_an_integer_customer_id_is_the_same_customer_as_its_decimal_string(api: Api) -> None:
    api.create_coupon("ONCE42", max_uses_per_customer=1)
    assert apply(api, "ONCE42", subtotal="10", customer_id=42).status_code == 201
    details = assert_error(apply(api, "ONCE42", subtotal="10", customer_id="42"), 422, "CUSTOMER_LIMIT_REACHED")
    assert details["customer_id"] == "42"


def test_a_coupon_without_a_per_customer_limit_takes_a_customer_id_and_ignores_it(api: Api) -> None:
    api.create_coupon("ANYONE")
    for _ in range(3):
        assert apply(api, "ANYONE", subtotal="10", customer_id="carol").status_code == 201


def test_checkout_keeps_the_per_customer_limit_for_its_user(api: Api, sql: Sql) -> None:
    api.create_coupon("CHECKOUT1", max_uses_per_customer=1)
    product = api.add_product("Mug", "12.00", 10)
    body = {"user_id": 77, "items": [{"product_id": product["id"], "quantity": 1}], "coupon_code": "CHECKOUT1"}
    first = api.post("/v1/checkout", json=body)
    assert first.status_code == 201, first.text
    assert set(first.json()) == {
        "id",
        "user_id",
        "subtotal",
        "total",
        "created_at",
        "discount_amount",
        "coupon_code",
        "redemption_id",
    }
    details = assert_error(api.post("/v1/checkout", json=body), 422, "CUSTOMER_LIMIT_REACHED")
    assert details == {"customer_id": "77", "max_uses_per_customer": 1, "uses": 1}
    assert api.stock_of(product["id"]) == 9  # the refused order took no stock
    assert sql("SELECT count(*) FROM orders WHERE retailer_id = %s", api.retailer_id) == [(1,)]
    # The API's customer 77 is the checkout's user 77.
    assert_error(apply(api, "CHECKOUT1", subtotal="12", customer_id=77), 422, "CUSTOMER_LIMIT_REACHED")
    other = api.post("/v1/checkout", json={**body, "user_id": 78})
    assert other.status_code == 201, other.text


# ---- idempotent replays with the new fields --------------------------------------------------------------


def test_a_replayed_apply_with_items_and_customer_id_returns_the_first_response_and_counts_once(api: Api) -> None:
    api.create_coupon("REPLAY1", discount_value="10", max_uses_per_customer=1)
    body = {"items": [SHOES, SHIRT], "shipping_amount": "5", "customer_id": "dave", "order_id": "o-1"}
    first = apply(api, "REPLAY1", key="order-1", **body)
    assert first.status_code == 201, first.text
    again = apply(api, "REPLAY1", key="order-1", **body)
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert api.coupon("REPLAY1")["uses_count"] == 1
    # The same key with anything else of the order changed is a reuse, not a replay.
    for changed in (
        {**body, "items": [SHOES]},
        {**body, "items": [SHIRT, SHOES]},
        {**body, "customer_id": "erin"},
        {**body, "shipping_amount": "6"},
    ):
        assert_error(apply(api, "REPLAY1", key="order-1", **changed), 409, "IDEMPOTENCY_KEY_REUSED")
    assert api.coupon("REPLAY1")["uses_count"] == 1


# ---- the validation order of DESIGN section 3 ------------------------------------------------------------


def test_the_first_rule_broken_wins_in_the_documented_order(api: Api) -> None:
    """One coupon breaking every rule at once; each step mends the rule that answered, and the
    next rule in the documented order answers. Validate and apply agree at every step."""
    api.create_coupon(
        "ORDERED",
        max_uses=1,
        max_uses_per_customer=1,
        min_order_value="50",
        scope={"excluded_product_ids": ["sku-9"]},
    )
    assert apply(api, "ORDERED", items=[line("sku-1", 1, "60.00")], customer_id="frank").status_code == 201
    api.post("/v1/coupons/ORDERED/deactivate")
    assert patch(api, "ORDERED", {"starts_at": future()}).status_code == 200
    order = {"items": [SALE], "customer_id": "frank"}  # 10.00 of an excluded product, a customer who used it

    def refused_with(code: str, without_customer: bool = False) -> dict[str, Any]:
        body = {"items": [SALE]} if without_customer else order
        details = assert_error(validate(api, "ORDERED", **body), 422, code)
        assert assert_error(apply(api, "ORDERED", **body), 422, code) == details
        return details

    refused_with("COUPON_INACTIVE")
    assert api.post("/v1/coupons/ORDERED/activate").status_code == 200
    refused_with("COUPON_NOT_STARTED")
    assert patch(api, "ORDERED", {"starts_at": None, "expires_at": PAST}).status_code == 200
    refused_with("COUPON_EXPIRED")
    assert patch(api, "ORDERED", {"expires_at": None}).status_code == 200
    assert refused_with("USAGE_LIMIT_REACHED") == {"max_uses": 1}
    assert patch(api, "ORDERED", {"max_uses": None}).status_code == 200
    refused_with("CUSTOMER_LIMIT_REACHED")
    refused_with("CUSTOMER_ID_REQUIRED", without_customer=True)
    order["customer_id"] = "grace"
    assert refused_with("MIN_ORDER_NOT_MET") == {"required_minimum": "50.00", "subtotal": "10.00"}
    assert patch(api, "ORDERED", {"min_order_value": None}).status_code == 200
    assert refused_with("COUPON_NOT_APPLICABLE")["reason"] == "product_excluded"
    assert patch(api, "ORDERED", {"scope": None}).status_code == 200
    assert validate(api, "ORDERED", **order).status_code == 200
    assert api.coupon("ORDERED")["uses_count"] == 1  # no refused apply counted


def test_an_unknown_code_is_not_found_before_any_rule(api: Api) -> None:
    for response in (
        validate(api, "NOSUCH1", items=[SALE], customer_id="x"),
        apply(api, "NOSUCH1", items=[SALE], customer_id="x"),
    ):
        assert_error(response, 404, "COUPON_NOT_FOUND")
