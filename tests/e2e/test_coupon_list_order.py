"""The coupons list in each order it offers (code, creation, uses; either direction, code
breaking ties), paged by cursors that belong to their order, and the live holds on every row."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.http import Api, assert_validation_failed

# Created in this order, which is neither code order nor uses order; uses: how many applies each gets.
COUPONS = [("ORD-C", 2), ("ORD-A", 0), ("ORD-E", 2), ("ORD-B", 1), ("ORD-D", 0)]


def walk(api: Api, sort: str, limit: int = 2, **params: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(10):
        query: dict[str, Any] = {"sort": sort, "limit": limit, **params}
        if cursor is not None:
            query["cursor"] = cursor
        response = api.get("/v1/coupons", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("pagination does not terminate")


@pytest.fixture
def listed(api: Api) -> Api:
    for code, uses in COUPONS:
        api.create_coupon(code, discount_type="fixed", discount_value="1")
        for _ in range(uses):
            assert api.apply(code, "10").status_code == 201
    return api


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("code", ["ORD-A", "ORD-B", "ORD-C", "ORD-D", "ORD-E"]),
        ("-code", ["ORD-E", "ORD-D", "ORD-C", "ORD-B", "ORD-A"]),
        ("created_at", ["ORD-C", "ORD-A", "ORD-E", "ORD-B", "ORD-D"]),
        ("-created_at", ["ORD-D", "ORD-B", "ORD-E", "ORD-A", "ORD-C"]),
        ("uses_count", ["ORD-A", "ORD-D", "ORD-B", "ORD-C", "ORD-E"]),
        ("-uses_count", ["ORD-E", "ORD-C", "ORD-B", "ORD-D", "ORD-A"]),
    ],
)
def test_each_order_walks_every_coupon_once_across_pages(listed: Api, sort: str, expected: list[str]) -> None:
    for limit in (1, 2, 5):
        assert [c["code"] for c in walk(listed, sort, limit)] == expected


def test_an_order_combines_with_the_status_filter(listed: Api) -> None:
    listed.post("/v1/coupons/ORD-E/deactivate")
    assert [c["code"] for c in walk(listed, "-uses_count", 1, status="active")] == ["ORD-C", "ORD-B", "ORD-D", "ORD-A"]


def test_a_cursor_of_another_order_is_refused_naming_the_cursor(listed: Api) -> None:
    by_uses = listed.get("/v1/coupons", params={"sort": "uses_count", "limit": 1}).json()["next_cursor"]
    by_code = listed.get("/v1/coupons", params={"limit": 1}).json()["next_cursor"]
    by_time = listed.get("/v1/coupons", params={"sort": "created_at", "limit": 1}).json()["next_cursor"]
    for sort, cursor in [("code", by_uses), ("uses_count", by_code), ("created_at", by_uses), ("-uses_count", by_time)]:
        response = listed.get("/v1/coupons", params={"sort": sort, "cursor": cursor})
        assert assert_validation_failed(response) == {"cursor"}, (sort, cursor)


def test_an_unknown_order_is_refused_naming_sort(api: Api) -> None:
    assert assert_validation_failed(api.get("/v1/coupons", params={"sort": "discount_value"})) == {"sort"}


def test_every_row_counts_its_live_holds_as_the_coupon_does(api: Api) -> None:
    api.create_coupon("HELD1", discount_type="fixed", discount_value="1", max_uses=3)
    api.create_coupon("HELD2", discount_type="fixed", discount_value="1")
    holds = []
    for _ in range(2):
        response = api.post("/v1/coupons/reserve", json={"code": "HELD1", "subtotal": "10", "ttl_seconds": 600})
        assert response.status_code == 201, response.text
        holds.append(response.json()["reservation_id"])
    rows = {c["code"]: c for c in api.get("/v1/coupons").json()["data"]}
    assert (rows["HELD1"]["holds"], rows["HELD2"]["holds"]) == (2, 0)
    assert rows["HELD1"] == api.coupon("HELD1")

    assert api.post(f"/v1/reservations/{holds[0]}/release").status_code == 200
    [row] = [c for c in api.get("/v1/coupons").json()["data"] if c["code"] == "HELD1"]
    assert row["holds"] == 1 == api.coupon("HELD1")["holds"]
