"""A coupon's state then: GET /v1/coupons/{code}/state?version=N or ?at=TIMESTAMP."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from functools import reduce
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI

from api.schemas import CouponPublic
from ledger.application import CouponLedger
from ledger.domain import Campaign, Coupon, CustomerUsage
from ledger.timestamps import format_timestamp
from tests.support.http import Api, Sql, assert_error, assert_validation_failed

SMALL_INTERVAL = 3  # snapshots every few events, so that reads at a version start from one


@pytest.fixture
def ledger(app: FastAPI) -> CouponLedger:
    ledger: CouponLedger = app.state.services.ledger
    return ledger


@pytest.fixture
def small_snapshots(ledger: CouponLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    intervals = {Coupon: SMALL_INTERVAL, CustomerUsage: SMALL_INTERVAL, Campaign: SMALL_INTERVAL}
    monkeypatch.setattr(ledger, "snapshotting_intervals", intervals)


def state(api: Api, code: str, **params: Any) -> httpx.Response:
    return api.get(f"/v1/coupons/{code}/state", params=params)


def replayed(ledger: CouponLedger, coupon_id: UUID, version: int, at: datetime | None = None) -> dict[str, Any]:
    """The coupon folded from its stored events 1..version (the event store alone, no snapshot),
    judged at ``at`` (by default the time of event ``version``), as the API shows a coupon."""
    events = list(ledger.events.get(coupon_id, lte=version))
    assert [e.originator_version for e in events] == list(range(1, version + 1))
    coupon = reduce(lambda aggregate, event: event.mutate(aggregate), events, None)
    assert isinstance(coupon, Coupon)
    return CouponPublic.from_coupon(coupon, at or events[-1].timestamp).model_dump(mode="json")


def a_long_history(api: Api) -> None:
    """Uses, a reversal, holds (one confirmed, one released, one left to lapse), a change of
    terms, deactivation and activation: every kind of event that moves a coupon's state."""
    api.create_coupon("THEN", max_uses=3, min_order_value="20")
    first = api.apply("THEN", "50").json()
    api.apply("THEN", "60")
    assert (
        api.post(f"/v1/redemptions/{first['redemption_id']}/reverse", json={"reason": "cancelled"}).status_code == 200
    )
    held = api.post("/v1/coupons/reserve", json={"code": "THEN", "subtotal": "40"}).json()
    released = api.post("/v1/coupons/reserve", json={"code": "THEN", "subtotal": "45"}).json()  # count_expired now
    assert api.post(f"/v1/reservations/{released['reservation_id']}/release").status_code == 200
    assert api.post(f"/v1/reservations/{held['reservation_id']}/confirm").status_code == 201
    assert api.request("PATCH", "/v1/coupons/THEN", json={"max_uses": 10, "min_order_value": None}).status_code == 200
    assert api.post("/v1/coupons/THEN/deactivate").status_code == 200
    assert api.post("/v1/coupons/THEN/activate").status_code == 200
    lapsing = api.post("/v1/coupons/reserve", json={"code": "THEN", "subtotal": "30", "ttl_seconds": 1})
    assert lapsing.status_code == 201, lapsing.text
    assert api.apply("THEN", "70").status_code == 201


def test_the_state_at_every_version_equals_replaying_its_events_from_the_first(
    api: Api, ledger: CouponLedger, sql: Sql, small_snapshots: None
) -> None:
    a_long_history(api)
    coupon_id = UUID(api.coupon("THEN")["id"])
    events = api.events("THEN")
    assert len(events) >= 11
    snapshots = sql("SELECT originator_version FROM ledger_snapshots WHERE originator_id = %s", coupon_id)
    assert len(snapshots) >= 2  # the reads below start from snapshots as well as from the creation

    statuses = []
    for event in events:
        version = event["version"]
        response = state(api, "then", version=version)
        assert response.status_code == 200, response.text
        assert response.json() == replayed(ledger, coupon_id, version), version
        assert response.headers["coupon-version"] == str(version)
        assert response.headers["coupon-state-at"] == event["occurred_at"]
        assert response.headers["coupon-archived"] == "false"
        statuses.append(response.json()["status"])
    # The derived status follows the history: used up by uses plus a live hold, inactive, active again.
    assert "count_expired" in statuses and "inactive" in statuses and statuses[-1] == "active"
    assert state(api, "THEN", version=len(events)).json() == {**api.coupon("THEN"), "status": statuses[-1]}


def test_a_state_counts_the_holds_live_at_its_moment(api: Api, ledger: CouponLedger) -> None:
    api.create_coupon("HOLDTHEN", max_uses=1)
    hold = api.post("/v1/coupons/reserve", json={"code": "HOLDTHEN", "subtotal": "30", "ttl_seconds": 1})
    assert hold.status_code == 201, hold.text
    reserved_at = datetime.fromisoformat(api.events("HOLDTHEN")[1]["occurred_at"])
    expires_at = datetime.fromisoformat(hold.json()["expires_at"])
    time.sleep(max(0.0, (expires_at - reserved_at).total_seconds()) + 0.2)  # the hold has lapsed, unrecorded

    assert state(api, "HOLDTHEN", version=2).json()["status"] == "count_expired"
    while_held = state(api, "HOLDTHEN", at=format_timestamp(reserved_at + timedelta(milliseconds=100)))
    assert while_held.json()["status"] == "count_expired"
    after_it = state(api, "HOLDTHEN", at=format_timestamp(expires_at))
    assert after_it.status_code == 200, after_it.text
    assert after_it.json()["status"] == "active"
    assert after_it.headers["coupon-version"] == "2"


def test_a_state_at_a_moment_is_the_state_after_the_last_event_at_or_before_it(
    api: Api, ledger: CouponLedger, small_snapshots: None
) -> None:
    a_long_history(api)
    coupon_id = UUID(api.coupon("THEN")["id"])
    events = api.events("THEN")
    times = [datetime.fromisoformat(e["occurred_at"]) for e in events]
    for index in range(len(events)):
        moments = [times[index]]  # exactly at the event: the event is included
        if index + 1 < len(events) and times[index + 1] > times[index]:
            moments.append(times[index] + (times[index + 1] - times[index]) / 2)  # between two events
        for moment in moments:
            version = max(e["version"] for e, t in zip(events, times, strict=True) if t <= moment)
            response = state(api, "THEN", at=format_timestamp(moment))
            assert response.status_code == 200, response.text
            assert response.json() == replayed(ledger, coupon_id, version, moment), moment
            assert response.headers["coupon-version"] == str(version)
            assert response.headers["coupon-state-at"] == format_timestamp(moment)


def test_a_moment_before_the_coupon_existed_is_coupon_not_found(api: Api) -> None:
    created = api.create_coupon("NOTYET")
    before = datetime.fromisoformat(created["created_at"]) - timedelta(microseconds=1)
    assert_error(state(api, "NOTYET", at=format_timestamp(before)), 404, "COUPON_NOT_FOUND")
    assert_error(state(api, "NOTYET", at="2000-01-01T00:00:00Z"), 404, "COUPON_NOT_FOUND")
    at_creation = state(api, "NOTYET", at=created["created_at"])
    assert at_creation.status_code == 200, at_creation.text
    assert at_creation.json() == created


def test_versions_outside_the_history_name_version(api: Api) -> None:
    api.create_coupon("RANGE")
    api.apply("RANGE", "30")
    for version in (0, -1, 3, 10**12):
        details = assert_error(state(api, "RANGE", version=version), 422, "VALIDATION_FAILED")
        assert [e["field"] for e in details["errors"]] == ["version"], version
    assert "2" in assert_error(state(api, "RANGE", version=3), 422, "VALIDATION_FAILED")["errors"][0]["message"]


@pytest.mark.parametrize("params", [{}, {"version": 1, "at": "2030-01-01T00:00:00Z"}])
def test_exactly_one_of_version_and_at_is_required(api: Api, params: dict[str, Any]) -> None:
    api.create_coupon("ONEOF")
    assert assert_validation_failed(state(api, "ONEOF", **params)) == {"version", "at"}


@pytest.mark.parametrize("at", ["yesterday", "2027-13-01T00:00:00Z", "0001-01-01T00:00:00+05:00"])
def test_a_timestamp_that_is_not_one_names_at(api: Api, at: str) -> None:
    api.create_coupon("BADAT")
    assert assert_validation_failed(state(api, "BADAT", at=at)) == {"at"}


def test_a_moment_still_to_come_names_at(api: Api) -> None:
    api.create_coupon("LATER")
    assert assert_validation_failed(state(api, "LATER", at="2999-01-01T00:00:00Z")) == {"at"}


def test_an_archived_coupons_history_stays_readable_and_says_when_it_was_archived(api: Api) -> None:
    api.create_coupon("GONE")
    api.apply("GONE", "30")
    assert api.delete("/v1/coupons/GONE").status_code == 204
    assert_error(api.get("/v1/coupons/GONE"), 404, "COUPON_NOT_FOUND")

    before = state(api, "GONE", version=2)
    assert before.status_code == 200, before.text
    assert (before.json()["uses_count"], before.headers["coupon-archived"]) == (1, "false")
    archived = state(api, "GONE", version=3)
    assert archived.status_code == 200, archived.text
    assert (archived.json()["uses_count"], archived.headers["coupon-archived"]) == (1, "true")
    now = state(api, "GONE", at=api.events("GONE")[-1]["occurred_at"])
    assert (now.headers["coupon-version"], now.headers["coupon-archived"]) == ("3", "true")


def test_another_retailers_coupon_and_a_missing_one_are_not_found(api: Api, other_api: Api) -> None:
    created = api.create_coupon("MINE")
    for caller, code in ((other_api, "MINE"), (api, "NOSUCH")):
        assert_error(state(caller, code, version=1), 404, "COUPON_NOT_FOUND")
        assert_error(state(caller, code, at=created["created_at"]), 404, "COUPON_NOT_FOUND")


def test_a_publishable_key_is_forbidden(api: Api) -> None:
    api.create_coupon("SECRETS")
    assert_error(state(api.publishable, "SECRETS", version=1), 403, "FORBIDDEN")
