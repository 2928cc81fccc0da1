"""Streamed exports of the audit trail: GET /v1/coupons/{code}/events?format=jsonl|csv and
GET /v1/audit/events (the retailer's whole log)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

import ledger.exports
from tests.support.http import Api, assert_error, assert_validation_failed

ZERO_HASH = "0" * 64
EVENT_FIELDS = ["version", "type", "occurred_at", "data", "prev_hash", "hash"]
LOGGED_FIELDS = ["position", "stream", "code", *EVENT_FIELDS]


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Exports read the store three events at a time, so that a short history spans many pages."""
    monkeypatch.setattr(ledger.exports, "PAGE_SIZE", 3)
    yield


def json_pages(api: Api, code: str) -> list[dict[str, Any]]:
    """The coupon's events through the paginated JSON pages, following the cursors."""
    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        response = api.get(f"/v1/coupons/{code}/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["data"]
        if page["next_cursor"] is None:
            return events
        params["cursor"] = page["next_cursor"]


def jsonl(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.text == "" or response.text.endswith("\n")
    return [json.loads(line) for line in response.text.splitlines()]


def csv_rows(response: Any, header: list[str]) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    reader = csv.reader(io.StringIO(response.text, newline=""))
    assert next(reader) == header
    return [dict(zip(header, row, strict=True)) for row in reader]


def canonical(event: dict[str, Any]) -> str:
    """DESIGN §4: the event's four served fields, sorted keys, no spaces, non-ASCII unescaped."""
    body = {k: event[k] for k in ("version", "type", "occurred_at", "data")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def redeem_a_few(api: Api, code: str, uses: int) -> None:
    api.create_coupon(code, max_uses=50)
    for n in range(uses):
        response = api.apply(code, "20", key=f"{code}-order-{n}", customer_id=f"cust-{n % 2}")
        assert response.status_code == 201, response.text
    api.post(f"/v1/coupons/{code}/deactivate")


def test_a_coupon_exported_as_json_lines_or_csv_equals_its_json_pages_event_for_event(
    api: Api, small_pages: None
) -> None:
    redeem_a_few(api, "EXPORT1", uses=7)  # 9 events: three pages of the store
    api.post("/v1/coupons/EXPORT1/activate")
    paged = json_pages(api, "EXPORT1")
    assert [e["version"] for e in paged] == list(range(1, 11))

    lines = jsonl(api.get("/v1/coupons/export1/events", params={"format": "jsonl"}))
    assert lines == paged
    assert all(list(line) == EVENT_FIELDS for line in lines)

    rows = csv_rows(api.get("/v1/coupons/EXPORT1/events", params={"format": "csv"}), EVENT_FIELDS)
    assert len(rows) == len(paged)
    for row, event in zip(rows, paged, strict=True):
        assert row["data"] == json.dumps(event["data"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert {**row, "version": int(row["version"]), "data": json.loads(row["data"])} == event


def test_a_coupon_export_resumes_after_the_cursor_of_a_version(api: Api) -> None:
    redeem_a_few(api, "EXPORT2", uses=3)
    cursor = api.get("/v1/coupons/EXPORT2/events", params={"limit": 2}).json()["next_cursor"]
    lines = jsonl(api.get("/v1/coupons/EXPORT2/events", params={"format": "jsonl", "cursor": cursor}))
    assert [e["version"] for e in lines] == [3, 4, 5]


def test_an_archived_coupons_history_is_still_exported_and_a_missing_coupons_is_not_found(api: Api) -> None:
    api.create_coupon("EXPORT3")
    assert api.delete("/v1/coupons/EXPORT3").status_code == 204
    lines = jsonl(api.get("/v1/coupons/EXPORT3/events", params={"format": "jsonl"}))
    assert [e["type"] for e in lines] == ["Coupon.Created", "Coupon.Archived"]
    # Refused in the error shape before anything is streamed.
    for export_format in ("jsonl", "csv"):
        response = api.get("/v1/coupons/NOSUCH9/events", params={"format": export_format})
        assert_error(response, 404, "COUPON_NOT_FOUND")


def test_the_retailer_export_holds_every_stream_in_increasing_position_and_each_chain_recomputes_from_it(
    api: Api, small_pages: None
) -> None:
    redeem_a_few(api, "LOGA", uses=3)
    api.create_coupon("LOGB", max_uses=5)
    hold = api.post("/v1/coupons/reserve", json={"code": "LOGB", "subtotal": "30", "customer_id": "cust-h"})
    assert hold.status_code == 201, hold.text
    confirmed = api.post(f"/v1/reservations/{hold.json()['reservation_id']}/confirm", json={"order_id": "o-9"})
    assert confirmed.status_code == 201, confirmed.text
    template = {"discount_type": "fixed", "discount_value": "3"}
    campaign = api.post("/v1/campaigns", json={"name": "Spring", "prefix": "SPR-", "count": 2, "coupon": template})
    assert campaign.status_code == 201, campaign.text

    logged = jsonl(api.get("/v1/audit/events"))  # jsonl is the default
    assert all(list(e) == LOGGED_FIELDS for e in logged)
    positions = [e["position"] for e in logged]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)

    kinds = {e["type"].split(".")[0] for e in logged}
    assert kinds == {"Coupon", "Redemption", "Reservation", "CustomerUsage", "Campaign"}
    streams: dict[str, list[dict[str, Any]]] = {}
    for event in logged:
        streams.setdefault(event["stream"], []).append(event)
    codes = {e["code"] for e in logged}
    assert {"LOGA", "LOGB", None} <= codes
    assert {e["code"] for e in logged if e["type"].startswith("Campaign.")} == {None}

    # Every stream of the retailer, each whole: version 1 up, its chain recomputed from the export alone.
    for events in streams.values():
        assert [e["version"] for e in events] == list(range(1, len(events) + 1))
        prev = ZERO_HASH
        for event in events:
            assert event["prev_hash"] == prev
            prev = hashlib.sha256((prev + canonical(event)).encode("utf-8")).hexdigest()
            assert event["hash"] == prev
    # A coupon's stream in the log is exactly its own export.
    loga = [e for e in logged if e["code"] == "LOGA" and e["type"].startswith("Coupon.")]
    assert [{k: e[k] for k in EVENT_FIELDS} for e in loga] == json_pages(api, "LOGA")

    rows = csv_rows(api.get("/v1/audit/events", params={"format": "csv"}), LOGGED_FIELDS)
    assert [
        {
            **row,
            "position": int(row["position"]),
            "version": int(row["version"]),
            "code": row["code"] or None,
            "data": json.loads(row["data"]),
        }
        for row in rows
    ] == logged


def test_resuming_the_retailer_export_after_a_middle_position_yields_exactly_the_rest(
    api: Api, small_pages: None
) -> None:
    redeem_a_few(api, "RESUME1", uses=4)
    redeem_a_few(api, "RESUME2", uses=2)
    logged = jsonl(api.get("/v1/audit/events", params={"format": "jsonl"}))
    middle = len(logged) // 2
    rest = jsonl(api.get("/v1/audit/events", params={"format": "jsonl", "after": logged[middle]["position"]}))
    assert rest == logged[middle + 1 :]
    assert jsonl(api.get("/v1/audit/events", params={"after": logged[-1]["position"]})) == []


def test_the_retailer_log_as_json_pages_follows_next_after_to_the_same_events(api: Api) -> None:
    redeem_a_few(api, "PAGED1", uses=3)
    logged = jsonl(api.get("/v1/audit/events"))
    paged: list[dict[str, Any]] = []
    params: dict[str, Any] = {"format": "json", "limit": 4}
    while True:
        response = api.get("/v1/audit/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"data", "next_after"}
        paged += page["data"]
        if page["next_after"] is None:
            break
        params["after"] = page["next_after"]
    assert paged == logged


def test_another_retailer_sees_none_of_the_retailers_events(api: Api, other_api: Api) -> None:
    redeem_a_few(api, "MINE1", uses=2)
    other_api.create_coupon("THEIRS1")
    mine = jsonl(api.get("/v1/audit/events"))
    theirs = jsonl(other_api.get("/v1/audit/events"))
    assert {e["code"] for e in mine} == {"MINE1"}
    assert {e["code"] for e in theirs} == {"THEIRS1"}
    assert not {e["stream"] for e in mine} & {e["stream"] for e in theirs}
    assert other_api.get("/v1/audit/events", params={"format": "json"}).json()["data"] == theirs
    assert_error(other_api.get("/v1/coupons/MINE1/events", params={"format": "jsonl"}), 404, "COUPON_NOT_FOUND")


@pytest.mark.parametrize("after", ["-1", "abc", "1.5", "", "99999999999999999999"])
def test_a_malformed_or_negative_after_is_a_validation_failure_naming_after(api: Api, after: str) -> None:
    assert assert_validation_failed(api.get("/v1/audit/events", params={"after": after})) == {"after"}


@pytest.mark.parametrize("export_format", ["xml", "JSONL", "", "ndjson"])
def test_an_unknown_export_format_is_a_validation_failure_naming_format(api: Api, export_format: str) -> None:
    api.create_coupon("FORMAT1")
    assert assert_validation_failed(api.get("/v1/audit/events", params={"format": export_format})) == {"format"}
    response = api.get("/v1/coupons/FORMAT1/events", params={"format": export_format})
    assert assert_validation_failed(response) == {"format"}


def test_the_retailer_export_refuses_a_publishable_key(api: Api) -> None:
    for export_format in ("jsonl", "csv", "json"):
        assert_error(api.publishable.get("/v1/audit/events", params={"format": export_format}), 403, "FORBIDDEN")
