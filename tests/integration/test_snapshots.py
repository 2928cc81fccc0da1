"""Snapshots on PostgreSQL: taken by the writer every SNAPSHOT_INTERVAL events of a coupon, in the
transaction of those events, and used to read a coupon after a restart."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import uuid4

import psycopg

from api.database import eventsourcing_env, open_ledger
from ledger.application import SNAPSHOT_INTERVAL, CouponLedger
from tests.support.commands import apply, create_coupon

SUBTOTAL = Decimal("80.00")


def new_ledger(url: str, ledgers: list[CouponLedger]) -> CouponLedger:
    ledger = open_ledger(eventsourcing_env(url, pool_size=2, max_overflow=2))
    ledgers.append(ledger)
    return ledger


def snapshot_versions(url: str, coupon_id: Any) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT originator_version FROM ledger_snapshots WHERE originator_id = %s ORDER BY 1", (coupon_id,)
        ).fetchall()
    return [row[0] for row in rows]


def test_the_writer_snapshots_a_coupon_each_time_it_passes_a_multiple_of_the_interval(
    database_url: str, open_ledgers: list[CouponLedger]
) -> None:
    ledger = new_ledger(database_url, open_ledgers)
    retailer_id = uuid4()
    coupon = create_coupon(ledger, retailer_id, "LONG", "fixed", Decimal("5"))
    for _ in range(2 * SNAPSHOT_INTERVAL + 50):  # versions 2 .. 2*interval + 51
        apply(ledger, retailer_id, "LONG", SUBTOTAL)

    assert snapshot_versions(database_url, coupon.id) == [SNAPSHOT_INTERVAL, 2 * SNAPSHOT_INTERVAL]
    assert ledger.writer.stats.snapshots == 2


def test_a_restarted_ledger_reads_a_coupon_from_its_newest_snapshot_and_the_events_after_it(
    database_url: str, open_ledgers: list[CouponLedger]
) -> None:
    ledger = new_ledger(database_url, open_ledgers)
    retailer_id = uuid4()
    coupon = create_coupon(ledger, retailer_id, "LONG", "fixed", Decimal("5"))
    uses = SNAPSHOT_INTERVAL + 30
    for _ in range(uses):
        apply(ledger, retailer_id, "LONG", SUBTOTAL)

    restarted = new_ledger(database_url, open_ledgers)
    snapshots, events = restarted.writer.reader._select({coupon.id: 0})
    assert snapshots[coupon.id].originator_version == SNAPSHOT_INTERVAL
    assert [e.originator_version for e in events[coupon.id]] == list(range(SNAPSHOT_INTERVAL + 1, uses + 2))

    receipt = apply(restarted, retailer_id, "LONG", SUBTOTAL)
    assert not receipt.replayed
    assert restarted.get_coupon(retailer_id, "LONG").uses_count == uses + 1
    assert restarted.get_coupon(retailer_id, "LONG").version == uses + 2


def test_a_snapshot_is_stored_only_with_the_events_it_sums_up(
    database_url: str, open_ledgers: list[CouponLedger]
) -> None:
    ours = new_ledger(database_url, open_ledgers)
    other = new_ledger(database_url, open_ledgers)
    retailer_id = uuid4()
    coupon = create_coupon(ours, retailer_id, "EDGE", "fixed", Decimal("5"))
    for _ in range(SNAPSHOT_INTERVAL - 2):  # the coupon is now at version interval - 1
        apply(ours, retailer_id, "EDGE", SUBTOTAL)

    real_save = ours.save
    attempts: list[Any] = []

    def the_other_process_reaches_the_interval_first(*events: Any, **kwargs: Any) -> Any:
        attempts.append(kwargs.get("snapshots"))
        if len(attempts) == 1:
            apply(other, retailer_id, "EDGE", SUBTOTAL, order_id="other")  # takes version = interval
        return real_save(*events, **kwargs)

    ours.save = the_other_process_reaches_the_interval_first  # type: ignore[method-assign]
    apply(ours, retailer_id, "EDGE", SUBTOTAL, order_id="ours")

    assert len(attempts) == 2 and attempts[0] and not attempts[1]  # our snapshot was in the lost save
    assert ours.version_conflicts == 1
    assert snapshot_versions(database_url, coupon.id) == [SNAPSHOT_INTERVAL]  # the other's, only
    with psycopg.connect(database_url) as conn:
        state = conn.execute(
            "SELECT convert_from(state, 'UTF8')::json->'state'->>'uses_count' FROM ledger_snapshots"
            " WHERE originator_id = %s",
            (coupon.id,),
        ).fetchone()
    assert state is not None and int(state[0]) == SNAPSHOT_INTERVAL - 1
