"""Managing coupons over HTTP: create, get, list (filters, paging, read-your-writes),
deactivate and activate, and every way a create request can be refused."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import pytest

from tests.support.http import PAST, Api, assert_error, assert_validation_failed, future

COUPON_FIELDS = {
    "id",
    "code",
    "discount_type",
    "discount_value",
    "min_order_value",
    "max_discount_amount",
    "starts_at",
    "expires_at",
    "max_uses",
    "max_uses_per_customer",
    "uses_count",
    "holds",
    "is_active",
    "status",
    "scope",
    "public",
    "campaign_id",
    "created_at",
}


def test_create_returns_201_and_the_full_coupon_with_amounts_as_two_place_strings(api: Api) -> None:
    expires = future()
    response = api.post(
        "/v1/coupons",
        json={
            "code": "SAVE10",
            "discount_type": "percentage",
            "discount_value": 10,
            "min_order_value": "50",
            "expires_at": expires,
            "max_uses": 100,
        },
    )
    assert response.status_code == 201, response.text
    coupon = response.json()
    assert set(coupon) == COUPON_FIELDS
    assert coupon["code"] == "SAVE10"
    assert coupon["discount_type"] == "percentage"
    assert coupon["discount_value"] == "10.00"
    assert coupon["min_order_value"] == "50.00"
    assert datetime.fromisoformat(coupon["expires_at"]) == datetime.fromisoformat(expires)
    assert coupon["max_uses"] == 100
    assert coupon["uses_count"] == 0
    assert coupon["is_active"] is True
    assert coupon["status"] == "active"
    assert datetime.fromisoformat(coupon["created_at"]).tzinfo is not None
    assert isinstance(coupon["id"], str) and len(coupon["id"]) == 36


def test_create_with_only_required_fields_defaults_the_optional_ones(api: Api) -> None:
    coupon = api.create_coupon("BARE1", discount_type="fixed", discount_value="7.5")
    assert coupon["discount_value"] == "7.50"
    assert coupon["min_order_value"] is None
    assert coupon["expires_at"] is None
    assert coupon["max_uses"] is None
    assert coupon["is_active"] is True
    assert coupon["status"] == "active"


@pytest.mark.parametrize(("sent", "shown"), [(19.99, "19.99"), ("19.9", "19.90"), (20, "20.00"), (" 3.5 ", "3.50")])
def test_amounts_are_accepted_as_numbers_or_strings(api: Api, sent: Any, shown: str) -> None:
    coupon = api.create_coupon("AMT1", discount_type="fixed", discount_value=sent)
    assert coupon["discount_value"] == shown


@pytest.mark.parametrize(
    ("discount_type", "value"), [("percentage", "100"), ("fixed", "150.00"), ("percentage", "0.01")]
)
def test_boundary_discount_values_are_accepted(api: Api, discount_type: str, value: str) -> None:
    coupon = api.create_coupon("EDGE1", discount_type=discount_type, discount_value=value)
    assert coupon["discount_type"] == discount_type


def test_the_code_is_trimmed_and_upper_cased(api: Api) -> None:
    coupon = api.create_coupon("  summer_sale-2024  ")
    assert coupon["code"] == "SUMMER_SALE-2024"
    assert api.coupon("summer_sale-2024")["id"] == coupon["id"]


def test_a_coupon_created_inactive_has_status_inactive(api: Api) -> None:
    coupon = api.create_coupon("DORMANT1", is_active=False)
    assert coupon["is_active"] is False
    assert coupon["status"] == "inactive"


def test_a_coupon_created_with_a_past_expiry_is_time_expired(api: Api) -> None:
    coupon = api.create_coupon("OLD1", expires_at=PAST)
    assert coupon["status"] == "time_expired"


def test_a_second_coupon_with_the_same_code_is_code_taken(api: Api) -> None:
    api.create_coupon("SAVE10")
    response = api.post("/v1/coupons", json={"code": "SAVE10", "discount_type": "fixed", "discount_value": "1"})
    details = assert_error(response, 409, "COUPON_CODE_TAKEN")
    assert details["code"] == "SAVE10"


@pytest.mark.parametrize("second", [" save10 ", "save10", "Save10", "\tSAVE10\n"])
def test_code_taken_ignores_case_and_surrounding_whitespace(api: Api, second: str) -> None:
    first = api.create_coupon("SAVE10", discount_value="10")
    response = api.post("/v1/coupons", json={"code": second, "discount_type": "fixed", "discount_value": "99"})
    assert_error(response, 409, "COUPON_CODE_TAKEN")
    kept = api.coupon("SAVE10")
    assert kept["id"] == first["id"]
    assert kept["discount_type"] == "percentage"
    assert kept["discount_value"] == "10.00"


VALID = {"code": "VALID1", "discount_type": "percentage", "discount_value": "10"}
INVALID_CREATES: dict[str, tuple[dict[str, Any], str]] = {
    "unknown extra field": ({**VALID, "colour": "red"}, "colour"),
    "three decimals": ({**VALID, "discount_value": "1.005"}, "discount_value"),
    "three decimals as number": ({**VALID, "discount_value": 1.005}, "discount_value"),
    "negative": ({**VALID, "discount_value": "-1"}, "discount_value"),
    "negative number": ({**VALID, "discount_value": -5}, "discount_value"),
    "NaN string": ({**VALID, "discount_value": "NaN"}, "discount_value"),
    "Infinity string": ({**VALID, "discount_value": "Infinity"}, "discount_value"),
    "minus Infinity": ({**VALID, "discount_value": "-Infinity"}, "discount_value"),
    "bool": ({**VALID, "discount_value": True}, "discount_value"),
    "not a number": ({**VALID, "discount_value": "ten"}, "discount_value"),
    "null value": ({**VALID, "discount_value": None}, "discount_value"),
    "zero": ({**VALID, "discount_value": "0"}, "discount_value"),
    "percentage over 100": ({**VALID, "discount_value": "100.01"}, "discount_value"),
    "unknown type": ({**VALID, "discount_type": "bogus"}, "discount_type"),
    "space in code": ({**VALID, "code": "SAVE 10"}, "code"),
    "symbol in code": ({**VALID, "code": "SAVE@10"}, "code"),
    "non-ascii code": ({**VALID, "code": "SÄVE10"}, "code"),
    "code too short": ({**VALID, "code": "AB"}, "code"),
    "code too long": ({**VALID, "code": "A" * 51}, "code"),
    "empty code": ({**VALID, "code": ""}, "code"),
    "max_uses zero": ({**VALID, "max_uses": 0}, "max_uses"),
    "max_uses negative": ({**VALID, "max_uses": -1}, "max_uses"),
    "max_uses fraction": ({**VALID, "max_uses": 1.5}, "max_uses"),
    "min_order three decimals": ({**VALID, "min_order_value": "10.001"}, "min_order_value"),
    "min_order negative": ({**VALID, "min_order_value": "-10"}, "min_order_value"),
    "min_order NaN": ({**VALID, "min_order_value": "NaN"}, "min_order_value"),
    "bad expiry": ({**VALID, "expires_at": "next tuesday"}, "expires_at"),
    "is_active not bool": ({**VALID, "is_active": "maybe"}, "is_active"),
}


@pytest.mark.parametrize(("body", "field"), INVALID_CREATES.values(), ids=INVALID_CREATES.keys())
def test_an_invalid_create_is_a_validation_failure_naming_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    fields = assert_validation_failed(api.post("/v1/coupons", json=body))
    assert field in fields
    assert api.list_codes() == []


def test_a_create_missing_required_fields_names_each_of_them(api: Api) -> None:
    fields = assert_validation_failed(api.post("/v1/coupons", json={}))
    assert {"code", "discount_type"} <= fields
    # discount_value is required by the type: percentage and fixed take one, free_shipping none.
    for discount_type in ("percentage", "fixed"):
        body = {"code": "SAVE10", "discount_type": discount_type}
        assert assert_validation_failed(api.post("/v1/coupons", json=body)) == {"discount_value"}


def test_a_create_with_a_non_object_body_is_a_validation_failure(api: Api) -> None:
    assert_validation_failed(api.post("/v1/coupons", json=["SAVE10"]))


def test_get_returns_the_current_state_and_accepts_the_code_in_any_case(api: Api) -> None:
    created = api.create_coupon("LOOKUP1", discount_type="fixed", discount_value="5", max_uses=3)
    fetched = api.coupon("lookup1")
    assert fetched == created


@pytest.mark.parametrize("code", ["NOSUCH1", "nosuch1", "A", "not a code!"])
def test_get_of_an_unknown_code_is_coupon_not_found(api: Api, code: str) -> None:
    assert_error(api.get(f"/v1/coupons/{code}"), 404, "COUPON_NOT_FOUND")


@pytest.mark.parametrize("action", ["deactivate", "activate"])
def test_deactivate_and_activate_of_an_unknown_code_are_coupon_not_found(api: Api, action: str) -> None:
    assert_error(api.post(f"/v1/coupons/NOSUCH1/{action}"), 404, "COUPON_NOT_FOUND")


def test_deactivate_keeps_the_coupon_and_marks_it_inactive(api: Api) -> None:
    created = api.create_coupon("PAUSE1")
    response = api.post("/v1/coupons/pause1/deactivate")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {**created, "is_active": False, "status": "inactive"}
    assert api.coupon("PAUSE1") == body


def test_deactivate_twice_is_harmless_and_records_one_event(api: Api) -> None:
    api.create_coupon("PAUSE2")
    first = api.post("/v1/coupons/PAUSE2/deactivate")
    second = api.post("/v1/coupons/PAUSE2/deactivate")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert second.json()["is_active"] is False
    assert [e["type"] for e in api.events("PAUSE2")] == ["Coupon.Created", "Coupon.Deactivated"]


def test_activate_restores_a_deactivated_coupon(api: Api) -> None:
    created = api.create_coupon("PAUSE3")
    api.post("/v1/coupons/PAUSE3/deactivate")
    response = api.post("/v1/coupons/PAUSE3/activate")
    assert response.status_code == 200, response.text
    assert response.json() == created
    assert api.coupon("PAUSE3")["status"] == "active"


def test_activate_twice_is_harmless_and_records_one_event(api: Api) -> None:
    api.create_coupon("PAUSE4", is_active=False)
    first = api.post("/v1/coupons/PAUSE4/activate")
    second = api.post("/v1/coupons/PAUSE4/activate")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert second.json()["status"] == "active"
    assert [e["type"] for e in api.events("PAUSE4")] == ["Coupon.Created", "Coupon.Activated"]


def test_activating_an_active_coupon_records_no_event(api: Api) -> None:
    created = api.create_coupon("PAUSE5")
    response = api.post("/v1/coupons/PAUSE5/activate")
    assert response.status_code == 200
    assert response.json() == created
    assert [e["type"] for e in api.events("PAUSE5")] == ["Coupon.Created"]


# --- list -------------------------------------------------------------------------------


def test_list_shows_a_coupon_created_just_before(api: Api) -> None:
    created = api.create_coupon("FRESH1")
    response = api.get("/v1/coupons")
    assert response.status_code == 200, response.text
    assert response.json() == {"data": [created], "next_cursor": None}


def test_list_shows_the_new_uses_count_right_after_an_apply(api: Api) -> None:
    api.create_coupon("FRESH2")
    assert api.apply("FRESH2", "100").status_code == 201
    (listed,) = api.get("/v1/coupons").json()["data"]
    assert listed["uses_count"] == 1
    assert api.apply("FRESH2", "100").status_code == 201
    (listed,) = api.get("/v1/coupons").json()["data"]
    assert listed["uses_count"] == 2


def test_list_shows_a_deactivation_right_after_it(api: Api) -> None:
    api.create_coupon("FRESH3")
    api.post("/v1/coupons/FRESH3/deactivate")
    (listed,) = api.get("/v1/coupons").json()["data"]
    assert listed["is_active"] is False
    assert listed["status"] == "inactive"


def test_a_listed_coupon_equals_the_coupon_fetched_by_code(api: Api) -> None:
    api.create_coupon("SAME1", discount_type="fixed", discount_value="2.5", min_order_value=10, max_uses=4)
    api.apply("SAME1", "20")
    (listed,) = api.get("/v1/coupons").json()["data"]
    assert listed == api.coupon("SAME1")


def test_list_filters_by_each_status(api: Api) -> None:
    api.create_coupon("ST-ACTIVE", expires_at=future(), max_uses=5)
    api.create_coupon("ST-INACTIVE", is_active=False)
    api.create_coupon("ST-EXPIRED", expires_at=PAST)
    api.create_coupon("ST-USEDUP", max_uses=1)
    assert api.apply("ST-USEDUP", "10").status_code == 201

    assert api.list_codes(status="active") == ["ST-ACTIVE"]
    assert api.list_codes(status="inactive") == ["ST-INACTIVE"]
    assert api.list_codes(status="time_expired") == ["ST-EXPIRED"]
    assert api.list_codes(status="count_expired") == ["ST-USEDUP"]
    assert sorted(api.list_codes()) == ["ST-ACTIVE", "ST-EXPIRED", "ST-INACTIVE", "ST-USEDUP"]
    statuses = {c["code"]: c["status"] for c in api.get("/v1/coupons").json()["data"]}
    assert statuses == {
        "ST-ACTIVE": "active",
        "ST-INACTIVE": "inactive",
        "ST-EXPIRED": "time_expired",
        "ST-USEDUP": "count_expired",
    }


def test_list_pages_walk_every_coupon_exactly_once_in_code_order(api: Api) -> None:
    codes = [f"PAGE{n:02d}" for n in range(1, 8)]
    for code in random.Random(7).sample(codes, len(codes)):
        api.create_coupon(code)
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        response = api.get("/v1/coupons", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"data", "next_cursor"}
        assert len(page["data"]) <= 3
        seen += [c["code"] for c in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "pagination does not terminate"
    assert seen == codes
    assert pages == 3


def test_a_page_that_holds_the_last_coupon_has_no_next_cursor(api: Api) -> None:
    for code in ("FIT1", "FIT2"):
        api.create_coupon(code)
    page = api.get("/v1/coupons", params={"limit": 2}).json()
    assert [c["code"] for c in page["data"]] == ["FIT1", "FIT2"]
    assert page["next_cursor"] is None


def test_paging_combines_with_the_status_filter(api: Api) -> None:
    for code in ("MIX1", "MIX3", "MIX5"):
        api.create_coupon(code)
    for code in ("MIX2", "MIX4"):
        api.create_coupon(code, is_active=False)
    first = api.get("/v1/coupons", params={"status": "active", "limit": 2}).json()
    assert [c["code"] for c in first["data"]] == ["MIX1", "MIX3"]
    second = api.get("/v1/coupons", params={"status": "active", "limit": 2, "cursor": first["next_cursor"]}).json()
    assert [c["code"] for c in second["data"]] == ["MIX5"]
    assert second["next_cursor"] is None


def test_an_empty_list_is_an_empty_page(api: Api) -> None:
    response = api.get("/v1/coupons")
    assert response.status_code == 200
    assert response.json() == {"data": [], "next_cursor": None}


@pytest.mark.parametrize("status", ["bogus", "ACTIVE", "scheduled-ish", ""])
def test_an_unknown_status_filter_is_a_validation_failure(api: Api, status: str) -> None:
    fields = assert_validation_failed(api.get("/v1/coupons", params={"status": status}))
    assert fields == {"status"}


@pytest.mark.parametrize("limit", ["0", "-1", "201", "ten"])
def test_an_out_of_range_limit_is_a_validation_failure(api: Api, limit: str) -> None:
    fields = assert_validation_failed(api.get("/v1/coupons", params={"limit": limit}))
    assert fields == {"limit"}


@pytest.mark.parametrize("cursor", ["abc", "zz", "!!!", "@@@@", "%%%%"])
def test_a_cursor_this_endpoint_never_issued_is_a_validation_failure(api: Api, cursor: str) -> None:
    api.create_coupon("CURSOR1")
    fields = assert_validation_failed(api.get("/v1/coupons", params={"cursor": cursor}))
    assert fields == {"cursor"}
