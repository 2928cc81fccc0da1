"""Threads racing to redeem one coupon on PostgreSQL: the store's version check admits exactly max_uses.

Inside one ledger the batching writer decides every command in turn, so no thread loses a version
race; separate ledgers (as separate processes would) race on the store's version check.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from uuid import UUID, uuid4

import pytest

from api.database import eventsourcing_env
from ledger.application import CouponLedger
from ledger.commands import Receipt
from ledger.domain import Coupon, Redemption
from ledger.errors import LedgerError
from tests.support.commands import apply, create_coupon
from tests.support.postgres import (
    StartLine,
    ledger_with_clock,
    project_to_head,
    race,
    recorded_redemptions,
    redeemed_events,
    uses_count,
)

THREADS = 100
MAX_USES = 10
SUBTOTAL = Decimal("80.00")


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return eventsourcing_env(database_url)


def start_together(ledgers: list[CouponLedger]) -> None:
    """Make every ledger's writer wait for the others at its next first reading of the clock, so
    that each decides against the coupon version the others hold."""
    line = StartLine(len(ledgers))
    for ledger in ledgers:
        ledger.clock = line


def outcome(result: Receipt | BaseException) -> str:
    if isinstance(result, Receipt):
        return "REDEEMED"
    if isinstance(result, LedgerError):
        return result.code
    return repr(result)


@pytest.mark.parametrize("ledger_count", [1, 4], ids=["one-ledger", "four-ledgers"])
def test_a_hundred_racing_redemptions_of_a_ten_use_coupon_redeem_it_exactly_ten_times(
    database_url: str, open_ledgers: list[CouponLedger], ledger_count: int
) -> None:
    # Each ledger's writer reads the coupon at the same version before any of them saves
    # (StartLine), so with several ledgers all but one lose the first version race.
    pool = {"pool_size": 4, "max_overflow": 12} if ledger_count == 1 else {"pool_size": 2, "max_overflow": 4}
    for _ in range(ledger_count):
        open_ledgers.append(ledger_with_clock(eventsourcing_env(database_url, **pool), partial(datetime.now, UTC)))
    retailer_id = uuid4()
    coupon = create_coupon(open_ledgers[0], retailer_id, "race10", "percentage", Decimal("10"), max_uses=MAX_USES)
    start_together(open_ledgers)  # after the creation, whose reading of the clock must not wait

    def apply_with(ledger: CouponLedger) -> Callable[[], Receipt]:
        return lambda: apply(ledger, retailer_id, "RACE10", SUBTOTAL)

    results = race([apply_with(open_ledgers[i % ledger_count]) for i in range(THREADS)])

    assert Counter(map(outcome, results)) == {"REDEEMED": MAX_USES, "USAGE_LIMIT_REACHED": THREADS - MAX_USES}
    conflicts = sum(ledger.version_conflicts for ledger in open_ledgers)
    assert conflicts == 0 if ledger_count == 1 else conflicts >= ledger_count - 1
    assert sum(ledger.writer.stats.commands for ledger in open_ledgers) >= THREADS + 1
    receipts = [r for r in results if isinstance(r, Receipt)]
    assert all(r.quote.discount_amount == Decimal("8.00") and not r.replayed for r in receipts)

    reader = open_ledgers[0]
    events = list(reader.events.get(coupon.id))
    redeemed = [e for e in events if isinstance(e, Coupon.Redeemed)]
    assert len(redeemed) == MAX_USES
    assert {e.redemption_id for e in redeemed} == {r.redemption_id for r in receipts}
    assert [e.originator_version for e in events] == list(range(1, MAX_USES + 2))
    assert redeemed_events(database_url, coupon.id) == MAX_USES
    assert reader.get_coupon(retailer_id, "RACE10").uses_count == MAX_USES

    assert recorded_redemptions(database_url) == MAX_USES
    for receipt in receipts:
        redemption = reader.repository.get(receipt.redemption_id)
        assert isinstance(redemption, Redemption)
        assert redemption.coupon_id == coupon.id

    project_to_head(eventsourcing_env(database_url), database_url)
    assert uses_count(database_url, coupon.id) == MAX_USES


def test_concurrent_applies_with_one_idempotency_key_record_one_redemption_and_return_its_id(
    database_url: str, env: dict[str, str], open_ledgers: list[CouponLedger]
) -> None:
    # Two ledgers (two processes) both find the key unused and read the coupon before either saves.
    open_ledgers.extend(ledger_with_clock(env, partial(datetime.now, UTC)) for _ in range(2))
    retailer_id = uuid4()
    coupon = create_coupon(open_ledgers[0], retailer_id, "ONCE", "fixed", Decimal("5"), max_uses=MAX_USES)
    start_together(open_ledgers)

    def apply_with(ledger: CouponLedger) -> Callable[[], Receipt]:
        return lambda: apply(ledger, retailer_id, "ONCE", SUBTOTAL, idempotency_key="order-42")

    results = race([apply_with(ledger) for ledger in open_ledgers])

    receipts = [r for r in results if isinstance(r, Receipt)]
    assert len(receipts) == 2, results
    assert receipts[0].redemption_id == receipts[1].redemption_id
    assert sorted(r.replayed for r in receipts) == [False, True]
    assert receipts[0].quote == receipts[1].quote
    assert redeemed_events(database_url, coupon.id) == 1
    assert recorded_redemptions(database_url) == 1
    assert open_ledgers[0].get_coupon(retailer_id, "ONCE").uses_count == 1
    assert sum(ledger.version_conflicts for ledger in open_ledgers) == 1

    project_to_head(env, database_url)
    assert uses_count(database_url, coupon.id) == 1


def test_racing_applies_under_distinct_idempotency_keys_each_count_once(
    database_url: str, env: dict[str, str], open_ledgers: list[CouponLedger]
) -> None:
    keys = [f"order-{i}" for i in range(8)]
    ledger = ledger_with_clock(env, partial(datetime.now, UTC))
    open_ledgers.append(ledger)
    retailer_id = uuid4()
    coupon = create_coupon(ledger, retailer_id, "KEYED", "fixed", Decimal("5"))

    def apply_keyed(key: str) -> Callable[[], Receipt]:
        return lambda: apply(ledger, retailer_id, "KEYED", SUBTOTAL, idempotency_key=key)

    results = race([apply_keyed(key) for key in keys * 2])

    receipts = [r for r in results if isinstance(r, Receipt)]
    assert len(receipts) == len(keys) * 2, results
    by_key: dict[str, set[UUID]] = {}
    for key, receipt in zip(keys * 2, receipts, strict=True):
        by_key.setdefault(key, set()).add(receipt.redemption_id)
    assert all(len(ids) == 1 for ids in by_key.values())
    assert len(set().union(*by_key.values())) == len(keys)
    assert sum(r.replayed for r in receipts if isinstance(r, Receipt)) == len(keys)
    assert redeemed_events(database_url, coupon.id) == len(keys)
    assert recorded_redemptions(database_url) == len(keys)
