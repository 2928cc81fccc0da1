"""One clock decides: processes whose clocks disagree never over-redeem, and events carry the
decision's time. On PostgreSQL, with several ledgers on one database standing for processes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import psycopg
import pytest

from api.database import eventsourcing_env, open_ledger
from ledger.application import CouponLedger
from ledger.errors import LedgerError
from tests.support.commands import apply, confirm, create_coupon, reserve
from tests.support.postgres import ledger_with_clock

D = Decimal
T0 = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)


def fixed(moment: datetime):  # type: ignore[no-untyped-def]
    return lambda: moment


def test_a_process_whose_clock_runs_fast_cannot_make_a_confirmed_hold_over_redeem(
    database_url: str, retailer_id: UUID, open_ledgers: list[CouponLedger]
) -> None:
    env = eventsourcing_env(database_url, pool_size=2, max_overflow=2)
    honest = ledger_with_clock(env, fixed(T0))
    fast = ledger_with_clock(env, fixed(T0 + timedelta(minutes=10)))  # its clock is ten minutes ahead
    open_ledgers.extend([honest, fast])
    create_coupon(honest, retailer_id, "ONLYONE", "fixed", D("5"), max_uses=1)

    hold = reserve(honest, retailer_id, "ONLYONE", D("50.00"), ttl_seconds=60)
    apply(fast, retailer_id, "ONLYONE", D("50.00"))  # by its clock the hold has expired

    with pytest.raises(LedgerError) as refused:
        confirm(honest, retailer_id, hold.reservation_id)  # by this clock the hold is still live

    assert refused.value.code == "USAGE_LIMIT_REACHED"
    assert honest.get_coupon(retailer_id, "ONLYONE").uses_count == 1


def test_a_confirm_within_the_limit_still_succeeds_beside_other_live_holds(
    database_url: str, retailer_id: UUID, open_ledgers: list[CouponLedger]
) -> None:
    ledger = ledger_with_clock(eventsourcing_env(database_url, pool_size=2, max_overflow=2), fixed(T0))
    open_ledgers.append(ledger)
    create_coupon(ledger, retailer_id, "TWOHOLDS", "fixed", D("5"), max_uses=2)
    first = reserve(ledger, retailer_id, "TWOHOLDS", D("50.00"))
    second = reserve(ledger, retailer_id, "TWOHOLDS", D("50.00"))

    assert not confirm(ledger, retailer_id, first.reservation_id).replayed
    assert not confirm(ledger, retailer_id, second.reservation_id).replayed
    assert ledger.get_coupon(retailer_id, "TWOHOLDS").uses_count == 2


def test_events_are_stamped_with_the_time_that_decided_them(
    database_url: str, retailer_id: UUID, open_ledgers: list[CouponLedger]
) -> None:
    ledger = ledger_with_clock(eventsourcing_env(database_url, pool_size=2, max_overflow=2), fixed(T0))
    open_ledgers.append(ledger)
    coupon = create_coupon(ledger, retailer_id, "STAMPED", "fixed", D("5"))
    receipt = apply(ledger, retailer_id, "STAMPED", D("50.00"))

    stamps = [e.timestamp for e in ledger.events.get(coupon.id)] + [
        e.timestamp for e in ledger.events.get(receipt.redemption_id)
    ]
    assert stamps == [T0, T0, T0]


def test_by_default_a_ledger_on_postgresql_reads_the_databases_clock(
    database_url: str, retailer_id: UUID, open_ledgers: list[CouponLedger]
) -> None:
    ledger = open_ledger(eventsourcing_env(database_url, pool_size=2, max_overflow=2))
    open_ledgers.append(ledger)
    with psycopg.connect(database_url, autocommit=True) as conn:
        before = conn.execute("SELECT clock_timestamp()").fetchone()
        reading = ledger.clock()
        after = conn.execute("SELECT clock_timestamp()").fetchone()
    assert before is not None and after is not None
    assert before[0] - timedelta(milliseconds=50) <= reading <= after[0] + timedelta(milliseconds=50)
    readings = [ledger.clock() for _ in range(1000)]
    assert readings == sorted(readings)  # never backwards
