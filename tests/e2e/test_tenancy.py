"""A retailer never sees another's coupons: another retailer's coupon is a 404, exactly like a
missing one, and nothing it does touches the owner's coupon."""

from __future__ import annotations

import pytest

from tests.e2e.support import Api, assert_error

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
