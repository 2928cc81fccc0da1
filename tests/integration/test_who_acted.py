"""Every event records who acted, covered by its hash: the sweeper for the holds it expires, the
command line for what it writes, and `system` for anything else in-process; never a key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID

import psycopg
import pytest

from api.database import open_ledger
from ledger.application import CouponLedger
from projections.coupons import CouponsView, construct_view
from projections.sweeper import Sweeper
from tests.support.commands import create_coupon, reserve
from tests.support.ledger import D, ManualClock
from tests.support.postgres import project_to_head, run_cli


@pytest.fixture
def view(env: dict[str, str]) -> Iterator[CouponsView]:
    view = construct_view(env)
    yield view
    view.datastore.close()


def test_a_hold_the_sweeper_expires_records_the_sweeper(
    env: dict[str, str], database_url: str, view: CouponsView, retailer_id: UUID
) -> None:
    clock = ManualClock()
    ledger = open_ledger(env)
    ledger.clock = clock
    try:
        create_coupon(ledger, retailer_id, "SWEPT", "fixed", D("5.00"))
        reserve(ledger, retailer_id, "SWEPT", D("30.00"), ttl_seconds=60)
        project_to_head(env, database_url)
        clock.advance(timedelta(minutes=5))
        assert Sweeper(database_url, ledger, view).expire_holds() == 1
        events = ledger.coupon_events(retailer_id, "SWEPT")
        assert [e.data["actor"] for e in events] == [{"kind": "system"}] * 2 + [{"kind": "sweeper"}]
        assert events[-1].type == "Coupon.ReservationExpired"
    finally:
        ledger.close()


def test_what_the_command_line_writes_records_the_command_line(database_url: str) -> None:
    created = run_cli(database_url, "retailer", "create", "cli-actor")
    assert created.returncode == 0, created.stderr
    made = run_cli(
        database_url,
        *("campaign", "create", "--retailer", "cli-actor", "--name", "Spring", "--prefix", "CLI", "--count", "3"),
        *("--coupon", '{"discount_type": "percentage", "discount_value": "10"}'),
    )
    assert made.returncode == 0, made.stderr
    with psycopg.connect(database_url) as conn:
        states = [bytes(row[0]) for row in conn.execute("SELECT state FROM ledger_events").fetchall()]
    actors = [json.loads(state)["actor"] for state in states]
    assert len(actors) == 5  # the campaign (created, its codes generated) and its three coupons
    assert all(actor == {"kind": "cli"} for actor in actors)
    key = json.loads(created.stdout)["api_key"]
    assert all(key not in state.decode() for state in states)


def test_a_direct_call_records_the_system(ledger: CouponLedger, retailer_id: UUID) -> None:
    create_coupon(ledger, retailer_id, "DIRECT", "fixed", D("5.00"))
    assert ledger.coupon_events(retailer_id, "DIRECT")[0].data["actor"] == {"kind": "system"}
