"""Validating and applying coupons over HTTP: the quote, the use count, every rule a
coupon can break, and Idempotency-Key replays."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.http import PAST, Api, assert_error, assert_validation_failed, future

QUOTE_FIELDS = {"valid", "code", "original_subtotal", "discount_amount", "final_total", "free_shipping"}
REDEMPTION_FIELDS = {"redemption_id", "code", "original_subtotal", "discount_amount", "final_total", "free_shipping"}


def test_validate_returns_the_quote_with_amounts_as_two_place_strings(api: Api) -> None:
    api.create_coupon("SAVE10", discount_value="10")
    response = api.post("/v1/coupons/validate", json={"code": "save10", "subtotal": 150})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "valid": True,
        "code": "SAVE10",
        "original_subtotal": "150.00",
        "discount_amount": "15.00",
        "final_total": "135.00",
        "free_shipping": False,
    }


def test_validate_consumes_nothing(api: Api) -> None:
    api.create_coupon("DRYRUN1", max_uses=1)
    for _ in range(3):
        response = api.post("/v1/coupons/validate", json={"code": "DRYRUN1", "subtotal": "80"})
        assert response.status_code == 200, response.text
    assert api.coupon("DRYRUN1")["uses_count"] == 0
    assert [e["type"] for e in api.events("DRYRUN1")] == ["Coupon.Created"]


@pytest.mark.parametrize(
    ("discount_type", "value", "subtotal", "discount", "total"),
    [
        ("percentage", "15", "33.33", "5.00", "28.33"),  # 4.9995 rounds half up
        ("percentage", "12.5", "0.04", "0.01", "0.03"),  # 0.005 rounds half up
        ("percentage", "100", "19.99", "19.99", "0.00"),
        ("fixed", "5", "19.99", "5.00", "14.99"),
        ("fixed", "50", "20", "20.00", "0.00"),  # never below zero
        ("fixed", "5", 0, "0.00", "0.00"),
    ],
)
def test_discounts_are_exact_to_the_cent(
    api: Api, discount_type: str, value: str, subtotal: Any, discount: str, total: str
) -> None:
    api.create_coupon("MATH1", discount_type=discount_type, discount_value=value)
    quote = api.post("/v1/coupons/validate", json={"code": "MATH1", "subtotal": subtotal}).json()
    assert (quote["discount_amount"], quote["final_total"]) == (discount, total)
    applied = api.apply("MATH1", subtotal).json()
    assert (applied["discount_amount"], applied["final_total"]) == (discount, total)


def test_apply_returns_201_with_the_redemption_and_counts_one_use(api: Api) -> None:
    api.create_coupon("SAVE20", discount_value="20")
    response = api.apply("save20", "49.99")
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == REDEMPTION_FIELDS
    assert body["code"] == "SAVE20"
    assert body["original_subtotal"] == "49.99"
    assert body["discount_amount"] == "10.00"
    assert body["final_total"] == "39.99"
    assert body["free_shipping"] is False
    assert len(body["redemption_id"]) == 36
    assert "Idempotent-Replayed" not in response.headers
    assert api.coupon("SAVE20")["uses_count"] == 1


def test_each_apply_without_a_key_is_a_new_use(api: Api) -> None:
    api.create_coupon("MULTI1")
    first = api.apply("MULTI1", "10").json()
    second = api.apply("MULTI1", "10").json()
    assert first["redemption_id"] != second["redemption_id"]
    assert api.coupon("MULTI1")["uses_count"] == 2


def test_apply_beyond_max_uses_is_usage_limit_reached_and_counts_nothing(api: Api) -> None:
    api.create_coupon("LIMIT2", max_uses=2)
    assert api.apply("LIMIT2", "10").status_code == 201
    assert api.apply("LIMIT2", "10").status_code == 201
    details = assert_error(api.apply("LIMIT2", "10"), 422, "USAGE_LIMIT_REACHED")
    assert details["max_uses"] == 2
    assert_error(
        api.post("/v1/coupons/validate", json={"code": "LIMIT2", "subtotal": "10"}), 422, "USAGE_LIMIT_REACHED"
    )
    coupon = api.coupon("LIMIT2")
    assert coupon["uses_count"] == 2
    assert coupon["status"] == "count_expired"


@pytest.mark.parametrize("endpoint", ["validate", "apply"])
def test_an_unknown_code_is_coupon_not_found(api: Api, endpoint: str) -> None:
    response = api.post(f"/v1/coupons/{endpoint}", json={"code": "GHOST1", "subtotal": "10"})
    assert_error(response, 404, "COUPON_NOT_FOUND")


@pytest.mark.parametrize("endpoint", ["validate", "apply"])
def test_a_deactivated_coupon_is_coupon_inactive(api: Api, endpoint: str) -> None:
    api.create_coupon("OFF1")
    api.post("/v1/coupons/OFF1/deactivate")
    response = api.post(f"/v1/coupons/{endpoint}", json={"code": "OFF1", "subtotal": "10"})
    assert_error(response, 422, "COUPON_INACTIVE")
    assert api.coupon("OFF1")["uses_count"] == 0


def test_a_coupon_created_inactive_cannot_be_applied_until_activated(api: Api) -> None:
    api.create_coupon("LATER1", is_active=False)
    assert_error(api.apply("LATER1", "10"), 422, "COUPON_INACTIVE")
    api.post("/v1/coupons/LATER1/activate")
    assert api.apply("LATER1", "10").status_code == 201
    assert api.coupon("LATER1")["uses_count"] == 1


@pytest.mark.parametrize("endpoint", ["validate", "apply"])
def test_a_coupon_past_its_expiry_is_coupon_expired(api: Api, endpoint: str) -> None:
    api.create_coupon("GONE1", expires_at=PAST)
    response = api.post(f"/v1/coupons/{endpoint}", json={"code": "GONE1", "subtotal": "10"})
    assert_error(response, 422, "COUPON_EXPIRED")
    assert api.coupon("GONE1")["uses_count"] == 0


def test_a_coupon_before_its_expiry_applies(api: Api) -> None:
    api.create_coupon("SOON1", expires_at=future())
    assert api.apply("SOON1", "10").status_code == 201


@pytest.mark.parametrize("endpoint", ["validate", "apply"])
def test_a_subtotal_below_the_minimum_is_min_order_not_met_with_both_amounts(api: Api, endpoint: str) -> None:
    api.create_coupon("MIN50", min_order_value="50")
    response = api.post(f"/v1/coupons/{endpoint}", json={"code": "MIN50", "subtotal": 40})
    details = assert_error(response, 422, "MIN_ORDER_NOT_MET")
    assert details == {"required_minimum": "50.00", "subtotal": "40.00"}
    assert "50.00" in response.json()["error"]["message"]
    assert api.coupon("MIN50")["uses_count"] == 0


def test_a_subtotal_equal_to_the_minimum_is_enough(api: Api) -> None:
    api.create_coupon("MIN50", min_order_value="50")
    assert api.apply("MIN50", "50.00").status_code == 201


def test_inactive_is_reported_before_expired(api: Api) -> None:
    api.create_coupon("BOTH1", is_active=False, expires_at=PAST)
    assert_error(api.apply("BOTH1", "10"), 422, "COUPON_INACTIVE")


def test_usage_limit_is_reported_before_the_minimum_order(api: Api) -> None:
    api.create_coupon("BOTH2", max_uses=1, min_order_value="50")
    assert api.apply("BOTH2", "60").status_code == 201
    assert_error(api.apply("BOTH2", "10"), 422, "USAGE_LIMIT_REACHED")


INVALID_SUBTOTALS: dict[str, tuple[dict[str, Any], str]] = {
    "missing subtotal": ({"code": "BODY1"}, "subtotal"),
    "missing code": ({"subtotal": "10"}, "code"),
    "negative": ({"code": "BODY1", "subtotal": "-1"}, "subtotal"),
    "three decimals": ({"code": "BODY1", "subtotal": "10.001"}, "subtotal"),
    "NaN": ({"code": "BODY1", "subtotal": "NaN"}, "subtotal"),
    "Infinity": ({"code": "BODY1", "subtotal": "Infinity"}, "subtotal"),
    "bool": ({"code": "BODY1", "subtotal": False}, "subtotal"),
    "extra field": ({"code": "BODY1", "subtotal": "10", "discount": "99"}, "discount"),
}


@pytest.mark.parametrize("endpoint", ["validate", "apply"])
@pytest.mark.parametrize(("body", "field"), INVALID_SUBTOTALS.values(), ids=INVALID_SUBTOTALS.keys())
def test_an_invalid_validate_or_apply_body_is_a_validation_failure(
    api: Api, endpoint: str, body: dict[str, Any], field: str
) -> None:
    api.create_coupon("BODY1")
    fields = assert_validation_failed(api.post(f"/v1/coupons/{endpoint}", json=body))
    assert field in fields
    assert api.coupon("BODY1")["uses_count"] == 0


# --- Idempotency-Key -------------------------------------------------------------------------


def test_a_replayed_idempotency_key_returns_the_first_response_and_counts_nothing(api: Api) -> None:
    api.create_coupon("ONCE1", discount_value="10")
    first = api.apply("ONCE1", "100", key="order-1001")
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    replay = api.apply("ONCE1", "100", key="order-1001")
    assert replay.status_code == 201, replay.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert api.coupon("ONCE1")["uses_count"] == 1
    assert [e["type"] for e in api.events("ONCE1")] == ["Coupon.Created", "Coupon.Redeemed"]


def test_an_idempotency_key_with_a_different_body_is_key_reused(api: Api) -> None:
    api.create_coupon("ONCE2")
    api.create_coupon("ONCE3")
    assert api.apply("ONCE2", "100", key="k-1").status_code == 201
    assert_error(api.apply("ONCE2", "101", key="k-1"), 409, "IDEMPOTENCY_KEY_REUSED")
    assert_error(api.apply("ONCE3", "100", key="k-1"), 409, "IDEMPOTENCY_KEY_REUSED")
    assert_error(api.apply("ONCE2", "100", key="k-1", order_id="other"), 409, "IDEMPOTENCY_KEY_REUSED")
    assert api.coupon("ONCE2")["uses_count"] == 1
    assert api.coupon("ONCE3")["uses_count"] == 0


def test_a_replay_succeeds_even_after_the_coupon_was_deactivated(api: Api) -> None:
    api.create_coupon("ONCE4")
    first = api.apply("ONCE4", "30", key="k-4")
    api.post("/v1/coupons/ONCE4/deactivate")
    replay = api.apply("ONCE4", "30", key="k-4")
    assert replay.status_code == 201, replay.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()


def test_a_replay_succeeds_even_after_the_last_use_was_taken(api: Api) -> None:
    api.create_coupon("ONCE5", max_uses=1)
    first = api.apply("ONCE5", "30", key="k-5")
    replay = api.apply("ONCE5", "30", key="k-5")
    assert replay.status_code == 201, replay.text
    assert replay.json() == first.json()
    assert api.coupon("ONCE5")["uses_count"] == 1


def test_a_failed_apply_does_not_use_up_its_idempotency_key(api: Api) -> None:
    api.create_coupon("ONCE6", min_order_value="50")
    assert_error(api.apply("ONCE6", "10", key="k-6"), 422, "MIN_ORDER_NOT_MET")
    response = api.apply("ONCE6", "60", key="k-6")
    assert response.status_code == 201, response.text
    assert "Idempotent-Replayed" not in response.headers
    assert api.coupon("ONCE6")["uses_count"] == 1


def test_different_keys_are_different_uses(api: Api) -> None:
    api.create_coupon("ONCE7")
    first = api.apply("ONCE7", "30", key="k-7a").json()
    second = api.apply("ONCE7", "30", key="k-7b").json()
    assert first["redemption_id"] != second["redemption_id"]
    assert api.coupon("ONCE7")["uses_count"] == 2


def test_an_empty_idempotency_key_is_a_validation_failure(api: Api) -> None:
    api.create_coupon("ONCE8")
    assert_validation_failed(api.apply("ONCE8", "30", key=""))
    assert api.coupon("ONCE8")["uses_count"] == 0
