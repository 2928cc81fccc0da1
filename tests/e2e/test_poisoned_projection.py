"""An event the coupons read model cannot hold, written straight to the ledger (past every
check of the API), stops the projection with a log line naming it; the API keeps answering:
the list with 503 SERVICE_UNAVAILABLE, everything read from the event store as before."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.utils import get_topic
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from ledger.domain import Coupon
from tests.support.http import Api, assert_error
from tests.support.postgres import fresh_database


@pytest.fixture
def served(server_url: str) -> Iterator[tuple[Any, TestClient]]:
    """An app of its own: the poisoned projection must not stop the other tests' read model."""
    with fresh_database(server_url, prefix="poison") as url:
        app = create_app(Settings(database_url=url))
        with TestClient(app, raise_server_exceptions=False) as client:
            yield app, client


POISONS = {
    "amount beyond numeric(14,2)": {"code": "HUGE1", "discount_value": Decimal("1e20")},
    "NUL in the code": {"code": "NUL\x001", "discount_value": Decimal("5.00")},
    "type the table refuses": {"code": "BOGUS1", "discount_type": "bogus", "discount_value": Decimal("5.00")},
    # PostgreSQL stores year 10000 UTC, but psycopg cannot read it back: every list would fail.
    "expiry beyond what can be read back": {
        "code": "FAR1",
        "discount_value": Decimal("5.00"),
        "expires_at": datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1))),
    },
}


@pytest.mark.parametrize("poison", POISONS.values(), ids=POISONS.keys())
def test_an_unwritable_event_stops_the_projection_naming_it_and_the_api_still_answers(
    served: tuple[Any, TestClient], caplog: pytest.LogCaptureFixture, poison: dict[str, Any]
) -> None:
    app, client = served
    services = app.state.services
    created = services.retailers.create("poisoned")
    retailer_id = created.retailer_id
    api = Api(client, retailer_id, created.api_key, created.publishable_key)
    api.create_coupon("BEFORE1")
    assert api.list_codes() == ["BEFORE1"]

    fields: dict[str, Any] = {
        "retailer_id": retailer_id,
        "discount_type": "fixed",
        "min_order_value": None,
        "expires_at": datetime(2030, 1, 1, tzinfo=UTC),
        "max_uses": None,
        "is_active": True,
        **poison,
    }
    bad = Coupon(**fields)  # past every check of the API and of the ledger's commands
    services.ledger.save(bad)
    api.create_coupon("AFTER1")

    with caplog.at_level(logging.ERROR, logger="projections.leader"):
        deadline = time.monotonic() + 20
        while services.leader.stopped_on is None and time.monotonic() < deadline:
            time.sleep(0.05)
    stopped = services.leader.stopped_on
    assert stopped is not None, "the projection did not stop"
    assert (stopped.originator_id, stopped.originator_version) == (bad.id, 1)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "projections.leader"]
    assert f"originator_id={bad.id}" in line
    assert "originator_version=1" in line
    assert f"topic={get_topic(Coupon.Created)}" in line

    response = api.get("/v1/coupons")
    assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert response.headers["Retry-After"]
    # What is read from the event store is not affected; writes go on being recorded.
    assert api.coupon("AFTER1")["code"] == "AFTER1"
    assert api.apply("AFTER1", "10.00").status_code == 201
    assert client.get("/healthz").status_code == 200
    # The events before the poisoned one were projected, none after it.
    view = services.coupons_view
    rows = view.list_coupons(retailer_id, now=datetime.now(UTC), status=None, after_code=None, limit=10)
    assert [r.code for r in rows] == ["BEFORE1"]


def test_a_list_request_never_sees_a_500_while_the_projection_is_stopped(served: tuple[Any, TestClient]) -> None:
    app, client = served
    services = app.state.services
    created = services.retailers.create("poisoned-2")
    retailer_id = created.retailer_id
    api = Api(client, retailer_id, created.api_key, created.publishable_key)
    services.ledger.save(
        Coupon(
            retailer_id=retailer_id,
            code=f"X{uuid4().hex[:8].upper()}",
            discount_type="fixed",
            discount_value=Decimal("1e15"),
            min_order_value=None,
            expires_at=None,
            max_uses=None,
            is_active=True,
        )
    )
    deadline = time.monotonic() + 20
    while services.leader.stopped_on is None and time.monotonic() < deadline:
        time.sleep(0.05)
    for params in ({}, {"status": "active"}, {"limit": 1}):
        assert_error(api.get("/v1/coupons", params=params), 503, "SERVICE_UNAVAILABLE")
