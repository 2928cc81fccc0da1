"""Holds under concurrency on PostgreSQL: holds and applies racing on a max_uses=5 coupon
never take uses plus live holds past 5; a hold confirmed from several processes at once is
redeemed once; confirm racing release ends the hold exactly one way.

Several CouponLedger instances on one database stand for separate processes (each has its own
writer, cache and pool); StartLine makes their writers decide against the same versions, so the
store's version check is what keeps the limit. Counts are read back from the event log with SQL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any, cast
from uuid import UUID, uuid4

import pytest

from api.database import eventsourcing_env
from ledger.application import CouponLedger
from ledger.commands import Hold, HoldEnded, Receipt
from ledger.errors import LedgerError
from tests.support.commands import apply, confirm, create_coupon, release, reserve
from tests.support.postgres import StartLine, events_of, ledger_with_clock, race

LEDGERS = 4
D = Decimal


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def ledgers(database_url: str, open_ledgers: list[CouponLedger]) -> list[CouponLedger]:
    for _ in range(LEDGERS):
        open_ledgers.append(ledger_with_clock(eventsourcing_env(database_url, pool_size=2, max_overflow=4), now))
    return open_ledgers


def start_together(ledgers: list[CouponLedger]) -> None:
    line = StartLine(len(ledgers))
    for ledger in ledgers:
        ledger.clock = line


def outcome(result: object) -> str:
    if isinstance(result, Hold):
        return "HELD"
    if isinstance(result, Receipt):
        return "REPLAYED" if result.replayed else "REDEEMED"
    if isinstance(result, HoldEnded):
        return "ALREADY" if result.already else result.status.upper()
    if isinstance(result, LedgerError):
        return result.code
    return repr(result)


def committed_after_each_event(ledger: CouponLedger, coupon_id: UUID) -> list[int]:
    """Uses plus holds of the coupon after each of its events (no hold of this test expires)."""
    aggregate: Any = None
    counts = []
    for event in ledger.events.get(coupon_id):
        aggregate = cast(Any, event).mutate(aggregate)
        counts.append(aggregate.uses_count + len(aggregate.holds))
    return counts


def test_holds_and_applies_racing_on_a_max_uses_5_coupon_never_exceed_5(
    database_url: str, ledgers: list[CouponLedger]
) -> None:
    retailer_id = uuid4()
    coupon = create_coupon(ledgers[0], retailer_id, "FIVEHOLD", "fixed", D("5.00"), max_uses=5)
    held: list[UUID] = []
    for round_number in range(6):
        start_together(ledgers)
        tasks: list[Callable[[], object]] = []
        for n in range(10):
            ledger = ledgers[n % LEDGERS]
            if n % 2:
                tasks.append(partial(apply, ledger, retailer_id, "FIVEHOLD", D("20.00")))
            else:
                tasks.append(partial(reserve, ledger, retailer_id, "FIVEHOLD", D("20.00"), ttl_seconds=600))
        # The holds of earlier rounds end, each from two processes at once: confirmed in odd
        # rounds, released in even ones; the uses they free are raced for by the new requests.
        ending, held = held, []
        for k, reservation_id in enumerate(ending):
            for ledger in (ledgers[k % LEDGERS], ledgers[(k + 1) % LEDGERS]):
                end = partial(confirm, ledger) if round_number % 2 else partial(release, ledger)
                tasks.append(partial(end, retailer_id, reservation_id))

        results = race(tasks)

        outcomes = Counter(map(outcome, results))
        allowed = {"HELD", "REDEEMED", "REPLAYED", "RELEASED", "ALREADY", "USAGE_LIMIT_REACHED"}
        assert set(outcomes) <= allowed, results
        # Each ended hold ended once: one of its two calls did it, the other saw it done.
        if round_number % 2:
            assert outcomes["REPLAYED"] == len(ending)
        else:
            assert outcomes["RELEASED"] == outcomes["ALREADY"] == len(ending)
        held = [r.reservation_id for r in results if isinstance(r, Hold)]
        state = ledgers[round_number % LEDGERS].get_coupon(retailer_id, "FIVEHOLD")
        assert state.uses_count + state.held(now()) <= 5
        assert state.held(now()) == len(held)

    counts = committed_after_each_event(ledgers[0], coupon.id)
    assert max(counts) <= 5, counts
    assert max(counts) == 5  # the limit was reached: the race did contend for the last uses
    assert sum(ledger.version_conflicts for ledger in ledgers) >= LEDGERS - 1
    redeemed = events_of(database_url, "Coupon.Redeemed", coupon.id)
    assert redeemed == events_of(database_url, "Redemption.Recorded") <= 5


def test_a_hold_confirmed_from_four_processes_at_once_is_redeemed_once(
    database_url: str, ledgers: list[CouponLedger]
) -> None:
    retailer_id = uuid4()
    coupon = create_coupon(ledgers[0], retailer_id, "ONCEHOLD", "percentage", D("10"), max_uses=1)
    hold = reserve(ledgers[1], retailer_id, "ONCEHOLD", D("80.00"), customer_id="alice")
    start_together(ledgers)

    results = race([partial(confirm, ledgers[n % LEDGERS], retailer_id, hold.reservation_id) for n in range(8)])

    assert Counter(map(outcome, results)) == {"REDEEMED": 1, "REPLAYED": 7}, results
    assert len({r.redemption_id for r in results if isinstance(r, Receipt)}) == 1
    assert events_of(database_url, "Coupon.Redeemed", coupon.id) == 1
    assert events_of(database_url, "Reservation.Confirmed") == 1
    assert events_of(database_url, "CustomerUsage.Used") == 1


def test_confirm_racing_release_ends_the_hold_one_way(database_url: str, ledgers: list[CouponLedger]) -> None:
    retailer_id = uuid4()
    coupon = create_coupon(ledgers[0], retailer_id, "EITHER", "fixed", D("5.00"), max_uses=3)
    holds = [reserve(ledgers[0], retailer_id, "EITHER", D("20.00")) for _ in range(3)]
    start_together(ledgers)
    tasks: list[Callable[[], object]] = []
    for k, hold in enumerate(holds):
        tasks.append(partial(confirm, ledgers[k % LEDGERS], retailer_id, hold.reservation_id))
        tasks.append(partial(release, ledgers[(k + 1) % LEDGERS], retailer_id, hold.reservation_id))

    results = race(tasks)

    for k in range(3):
        pair = {outcome(results[2 * k]), outcome(results[2 * k + 1])}
        assert pair in ({"REDEEMED", "INVALID_TRANSITION"}, {"INVALID_TRANSITION", "RELEASED"}), results
    confirmed = sum(isinstance(r, Receipt) for r in results)
    assert events_of(database_url, "Coupon.Redeemed", coupon.id) == confirmed
    assert events_of(database_url, "Coupon.ReservationReleased", coupon.id) == 3 - confirmed
    final = ledgers[3].get_coupon(retailer_id, "EITHER")
    assert (final.uses_count, final.holds) == (confirmed, {})
