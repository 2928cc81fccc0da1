"""The audit trail of one coupon: GET /v1/coupons/{code}/events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.support.http import Api, assert_error, assert_validation_failed


def test_events_list_every_change_in_version_order_with_its_data(api: Api) -> None:
    created = api.create_coupon("AUDIT1", discount_type="fixed", discount_value="5", min_order_value="20", max_uses=9)
    redemption = api.apply("AUDIT1", "25", order_id="ord-77").json()
    api.post("/v1/coupons/AUDIT1/deactivate")
    api.post("/v1/coupons/AUDIT1/activate")

    response = api.get("/v1/coupons/audit1/events")
    assert response.status_code == 200, response.text
    page = response.json()
    assert set(page) == {"data", "next_cursor"}
    assert page["next_cursor"] is None
    events = page["data"]
    for event in events:
        assert set(event) == {"version", "type", "occurred_at", "data", "prev_hash", "hash"}
        assert datetime.fromisoformat(event["occurred_at"]).tzinfo is not None
        # Who acted: the secret key's public id and the request, never the key itself.
        actor = event["data"].pop("actor")
        assert actor["kind"] == "secret_key" and actor["key_id"].startswith("key_")
        assert api.api_key not in str(actor) and len(actor["request_id"]) == 32
    assert [e["version"] for e in events] == [1, 2, 3, 4]
    assert [e["type"] for e in events] == [
        "Coupon.Created",
        "Coupon.Redeemed",
        "Coupon.Deactivated",
        "Coupon.Activated",
    ]
    created_data = events[0]["data"]
    assert created_data["code"] == "AUDIT1"
    assert created_data["discount_type"] == "fixed"
    assert created_data["discount_value"] == "5.00"
    assert created_data["min_order_value"] == "20.00"
    assert created_data["max_uses"] == 9
    assert created_data["expires_at"] is None
    assert created_data["is_active"] is True
    assert created_data["retailer_id"] == str(api.retailer_id)
    assert events[0]["occurred_at"] == created["created_at"]
    assert events[1]["data"] == {
        "redemption_id": redemption["redemption_id"],
        "original_subtotal": "25.00",
        "discount_amount": "5.00",
        "final_total": "20.00",
        "order_id": "ord-77",
        "reservation_id": None,  # a plain apply confirms no hold
        "customer_id": None,  # none was sent
    }
    assert events[2]["data"] == {}
    assert events[3]["data"] == {}


def test_a_failed_apply_records_no_event(api: Api) -> None:
    api.create_coupon("AUDIT2", min_order_value="50")
    assert_error(api.apply("AUDIT2", "10"), 422, "MIN_ORDER_NOT_MET")
    assert [e["type"] for e in api.events("AUDIT2")] == ["Coupon.Created"]


def test_events_page_with_limit_and_next_cursor_without_gaps_or_repeats(api: Api) -> None:
    api.create_coupon("AUDIT3")
    for _ in range(4):
        assert api.apply("AUDIT3", "10").status_code == 201
    versions: list[list[int]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        response = api.get("/v1/coupons/AUDIT3/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        versions.append([e["version"] for e in page["data"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(versions) < 10, "pagination does not terminate"
    assert versions == [[1, 2], [3, 4], [5]]


def test_an_events_page_that_holds_the_last_event_has_no_next_cursor(api: Api) -> None:
    api.create_coupon("AUDIT4")
    api.apply("AUDIT4", "10")
    page = api.get("/v1/coupons/AUDIT4/events", params={"limit": 2}).json()
    assert [e["version"] for e in page["data"]] == [1, 2]
    assert page["next_cursor"] is None


def test_events_of_an_unknown_coupon_are_coupon_not_found(api: Api) -> None:
    assert_error(api.get("/v1/coupons/NOSUCH1/events"), 404, "COUPON_NOT_FOUND")


@pytest.mark.parametrize("limit", ["0", "501", "-3", "many"])
def test_an_out_of_range_events_limit_is_a_validation_failure(api: Api, limit: str) -> None:
    api.create_coupon("AUDIT5")
    fields = assert_validation_failed(api.get("/v1/coupons/AUDIT5/events", params={"limit": limit}))
    assert fields == {"limit"}


@pytest.mark.parametrize("cursor", ["abc", "zz", "!!!", "QUFB", "LTE", "wrI"])
def test_an_events_cursor_this_endpoint_never_issued_is_a_validation_failure(api: Api, cursor: str) -> None:
    # "QUFB", "LTE" and "wrI" are well-formed base64 of "AAA", "-1" and "²": still not version cursors.
    api.create_coupon("AUDIT6")
    fields = assert_validation_failed(api.get("/v1/coupons/AUDIT6/events", params={"cursor": cursor}))
    assert fields == {"cursor"}
