"""Holds in the coupons list and the service's sweeper, over HTTP: GET /v1/coupons?status=
counts live holds exactly like a coupon's own status, a hold stops counting once its TTL passes,
and the sweeper the service starts records its expiry; the service stops its sweeper with itself."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.support.http import Api
from tests.support.postgres import wait_for


@pytest.fixture(scope="module")
def app(e2e_database_url: str) -> FastAPI:
    """The module's app, sweeping every 0.2 s."""
    return create_app(Settings(database_url=e2e_database_url, sweep_interval=0.2))


def reserve(api: Api, code: str, **extra: Any) -> dict[str, Any]:
    response = api.post("/v1/coupons/reserve", json={"code": code, "subtotal": "50.00", **extra})
    assert response.status_code == 201, response.text
    return response.json()


def listed(api: Api, status: str | None = None) -> dict[str, str]:
    response = api.get("/v1/coupons", params={"status": status} if status else None)
    assert response.status_code == 200, response.text
    return {coupon["code"]: coupon["status"] for coupon in response.json()["data"]}


def test_the_status_filter_counts_live_holds_like_the_coupon_itself(api: Api) -> None:
    api.create_coupon("HELDONE", max_uses=1)
    api.create_coupon("HELDTWO", max_uses=2)
    api.create_coupon("NOLIMIT")
    first = reserve(api, "HELDONE")
    reserve(api, "HELDTWO")
    reserve(api, "NOLIMIT")
    assert api.apply("HELDTWO", "50.00").status_code == 201

    assert listed(api, "count_expired") == {"HELDONE": "count_expired", "HELDTWO": "count_expired"}
    assert listed(api, "active") == {"NOLIMIT": "active"}
    assert {code: api.coupon(code)["status"] for code in ("HELDONE", "HELDTWO", "NOLIMIT")} == listed(api)

    released = api.post(f"/v1/reservations/{first['reservation_id']}/release")
    assert released.status_code == 200, released.text
    assert listed(api, "active") == {"HELDONE": "active", "NOLIMIT": "active"}
    confirmed = api.post(f"/v1/reservations/{reserve(api, 'HELDONE')['reservation_id']}/confirm")
    assert confirmed.status_code == 201, confirmed.text
    assert listed(api, "count_expired") == {"HELDONE": "count_expired", "HELDTWO": "count_expired"}
    assert api.coupon("HELDONE")["uses_count"] == 1


def test_a_hold_stops_counting_at_its_ttl_and_the_sweeper_records_its_expiry(app: FastAPI, api: Api) -> None:
    api.create_coupon("BRIEF", max_uses=1)
    hold = reserve(api, "BRIEF", ttl_seconds=1)
    assert listed(api, "count_expired") == {"BRIEF": "count_expired"}

    wait_for(lambda: listed(api, "active") == {"BRIEF": "active"}, 30, message="the hold's TTL to pass")
    sweeper = app.state.services.sweeper
    assert sweeper is not None and sweeper.is_sweeping.is_set()
    wait_for(
        lambda: (
            [event["type"] for event in api.events("BRIEF")]
            == ["Coupon.Created", "Coupon.Reserved", "Coupon.ReservationExpired"]
        ),
        30,
        message="the sweeper to record the expiry",
    )
    assert api.get(f"/v1/reservations/{hold['reservation_id']}").json()["status"] == "expired"
    assert listed(api, "active") == {"BRIEF": "active"}


def test_the_service_stops_its_sweeper_when_it_stops(e2e_database_url: str) -> None:
    other = create_app(Settings(database_url=e2e_database_url, sweep_interval=0.2))
    with TestClient(other):
        sweeper = other.state.services.sweeper
        assert sweeper is not None and sweeper._thread.is_alive()
    assert not sweeper._thread.is_alive()
    assert not sweeper.is_sweeping.is_set()
