"""Holds over HTTP: POST /v1/coupons/reserve, GET /v1/reservations/{id},
POST /v1/reservations/{id}/confirm and /release, with each of their errors."""

from __future__ import annotations

import time
from typing import Any
from uuid import uuid4

import pytest

from tests.support.http import Api, assert_error


def reserve(api: Api, code: str, subtotal: str = "50.00", key: str | None = None, **extra: Any) -> Any:
    headers = {"Idempotency-Key": key} if key is not None else None
    return api.post("/v1/coupons/reserve", json={"code": code, "subtotal": subtotal, **extra}, headers=headers)


def held(api: Api, code: str, **extra: Any) -> dict[str, Any]:
    response = reserve(api, code, **extra)
    assert response.status_code == 201, response.text
    return response.json()


def test_reserve_holds_a_use_and_answers_the_hold(api: Api) -> None:
    api.create_coupon("HOLD10", max_uses=1)
    response = reserve(api, "hold10", "80.00", ttl_seconds=120, order_id="cart-1")
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {
        "reservation_id",
        "code",
        "original_subtotal",
        "discount_amount",
        "final_total",
        "free_shipping",
        "expires_at",
        "status",
    }
    assert (body["code"], body["discount_amount"], body["final_total"], body["status"]) == (
        "HOLD10",
        "8.00",
        "72.00",
        "held",
    )
    assert body["expires_at"].endswith("Z")
    assert "Idempotent-Replayed" not in response.headers
    # The hold counts like a use: the coupon is count_expired, a second hold or an apply is refused.
    assert api.coupon("HOLD10")["status"] == "count_expired"
    assert_error(reserve(api, "HOLD10"), 422, "USAGE_LIMIT_REACHED")
    assert_error(api.apply("HOLD10", "80.00"), 422, "USAGE_LIMIT_REACHED")
    state = api.get(f"/v1/reservations/{body['reservation_id']}")
    assert state.status_code == 200, state.text
    assert state.json() | {"created_at": None} == {
        "reservation_id": body["reservation_id"],
        "code": "HOLD10",
        "status": "held",
        "original_subtotal": "80.00",
        "discount_amount": "8.00",
        "final_total": "72.00",
        "free_shipping": False,
        "expires_at": body["expires_at"],
        "customer_id": None,
        "order_id": "cart-1",
        "redemption_id": None,
        "created_at": None,
        "ended_at": None,
    }


def test_a_repeated_idempotency_key_replays_the_hold(api: Api) -> None:
    api.create_coupon("KEYHOLD", max_uses=5)
    first = reserve(api, "KEYHOLD", key="hold-1")
    again = reserve(api, "KEYHOLD", key="hold-1")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert_error(reserve(api, "KEYHOLD", "60.00", key="hold-1"), 409, "IDEMPOTENCY_KEY_REUSED")
    assert [e["type"] for e in api.events("KEYHOLD")].count("Coupon.Reserved") == 1
    bad = reserve(api, "KEYHOLD", key="x" * 256)
    assert_error(bad, 422, "VALIDATION_FAILED")
    assert bad.json()["error"]["details"]["errors"][0]["field"] == "Idempotency-Key"


@pytest.mark.parametrize("ttl", [0, 86_401, "60", True, 1.5])
def test_ttl_seconds_must_be_a_whole_number_of_seconds_up_to_a_day(api: Api, ttl: Any) -> None:
    api.create_coupon("TTLHOLD")
    response = reserve(api, "TTLHOLD", ttl_seconds=ttl)
    assert_error(response, 422, "VALIDATION_FAILED")
    assert response.json()["error"]["details"]["errors"][0]["field"] == "ttl_seconds"


def test_reserve_refuses_what_apply_refuses(api: Api) -> None:
    assert_error(reserve(api, "NOSUCH"), 404, "COUPON_NOT_FOUND")
    api.create_coupon("MINHOLD", min_order_value="100.00")
    refused = reserve(api, "MINHOLD", "40.00")
    assert_error(refused, 422, "MIN_ORDER_NOT_MET")
    assert refused.json()["error"]["details"] == {"required_minimum": "100.00", "subtotal": "40.00"}
    api.create_coupon("ONCEHOLD", max_uses_per_customer=1)
    assert_error(reserve(api, "ONCEHOLD"), 422, "CUSTOMER_ID_REQUIRED")
    held(api, "ONCEHOLD", customer_id="alice")
    assert_error(reserve(api, "ONCEHOLD", customer_id="alice"), 422, "CUSTOMER_LIMIT_REACHED")
    assert_error(api.apply("ONCEHOLD", "50.00", customer_id="alice"), 422, "CUSTOMER_LIMIT_REACHED")
    held(api, "ONCEHOLD", customer_id="bob")
    assert_error(api.post("/v1/coupons/reserve", json={"code": "ONCEHOLD"}), 422, "VALIDATION_FAILED")


def test_confirm_turns_the_hold_into_a_redemption_once(api: Api) -> None:
    api.create_coupon("CONF10", max_uses=1)
    hold = held(api, "CONF10", subtotal="40.00", order_id="cart-9")
    path = f"/v1/reservations/{hold['reservation_id']}"
    confirmed = api.post(f"{path}/confirm", json={"order_id": "1001"})
    assert confirmed.status_code == 201, confirmed.text
    body = confirmed.json()
    assert body | {"redemption_id": None} == {
        "redemption_id": None,
        "reservation_id": hold["reservation_id"],
        "code": "CONF10",
        "original_subtotal": "40.00",
        "discount_amount": "4.00",
        "final_total": "36.00",
        "free_shipping": False,
    }
    again = api.post(f"{path}/confirm")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == body
    coupon = api.coupon("CONF10")
    assert (coupon["uses_count"], coupon["status"]) == (1, "count_expired")
    state = api.get(path).json()
    assert (state["status"], state["redemption_id"], state["order_id"]) == ("confirmed", body["redemption_id"], "1001")
    assert state["ended_at"] is not None
    assert_error(api.post(f"{path}/release"), 409, "INVALID_TRANSITION")
    # The redemption is like any other: reversing it gives the use back.
    reversed_ = api.post(f"/v1/redemptions/{body['redemption_id']}/reverse", json={"reason": "cancelled"})
    assert reversed_.status_code == 200, reversed_.text
    assert api.coupon("CONF10")["status"] == "active"
    assert_error(api.post(f"{path}/confirm", json={"order_id": 5}), 422, "VALIDATION_FAILED")


def test_release_gives_the_use_back_and_is_idempotent(api: Api) -> None:
    api.create_coupon("REL10", max_uses=1)
    hold = held(api, "REL10")
    path = f"/v1/reservations/{hold['reservation_id']}"
    released = api.post(f"{path}/release")
    assert released.status_code == 200, released.text
    assert (released.json()["status"], released.json()["already_ended"]) == ("released", False)
    assert api.coupon("REL10")["status"] == "active"
    again = api.post(f"{path}/release")
    assert (again.status_code, again.json()["status"], again.json()["already_ended"]) == (200, "released", True)
    assert_error(api.post(f"{path}/confirm"), 409, "INVALID_TRANSITION")
    assert api.apply("REL10", "50.00").status_code == 201
    types = [e["type"] for e in api.events("REL10")]
    assert types == ["Coupon.Created", "Coupon.Reserved", "Coupon.ReservationReleased", "Coupon.Redeemed"]


def test_a_hold_past_its_ttl_stops_counting_and_cannot_be_confirmed(api: Api) -> None:
    api.create_coupon("TTL1", max_uses=1)
    hold = held(api, "TTL1", ttl_seconds=1)
    path = f"/v1/reservations/{hold['reservation_id']}"
    assert api.coupon("TTL1")["status"] == "count_expired"
    time.sleep(1.1)
    assert api.coupon("TTL1")["status"] == "active"  # at once, before anything records the expiry
    assert api.get(path).json()["status"] == "expired"
    expired = api.post(f"{path}/confirm")
    assert_error(expired, 422, "RESERVATION_EXPIRED")
    assert expired.json()["error"]["details"]["expired_at"] == hold["expires_at"]
    released = api.post(f"{path}/release")
    assert (released.status_code, released.json()["status"], released.json()["already_ended"]) == (
        200,
        "expired",
        False,
    )
    assert api.events("TTL1")[-1]["type"] == "Coupon.ReservationExpired"
    assert api.apply("TTL1", "50.00").status_code == 201


def test_another_retailers_reservation_is_not_found(api: Api, other_api: Api) -> None:
    api.create_coupon("MINE10")
    path = f"/v1/reservations/{held(api, 'MINE10')['reservation_id']}"
    for call in (lambda: other_api.get(path), lambda: other_api.post(f"{path}/confirm")):
        assert_error(call(), 404, "RESERVATION_NOT_FOUND")
    assert_error(other_api.post(f"{path}/release"), 404, "RESERVATION_NOT_FOUND")
    assert api.get(path).json()["status"] == "held"
    for missing in (str(uuid4()), "not-a-uuid"):
        assert_error(api.get(f"/v1/reservations/{missing}"), 404, "RESERVATION_NOT_FOUND")
        assert_error(api.post(f"/v1/reservations/{missing}/confirm"), 404, "RESERVATION_NOT_FOUND")
        assert_error(api.post(f"/v1/reservations/{missing}/release"), 404, "RESERVATION_NOT_FOUND")
