"""The writer decides from memory and lets the save's version check stand for its read.

A writer holds each coupon as it last stored it, and takes a redemption that an idempotency key
names as new. When every command of a batch writes what it relied on, the batch is decided and
saved with no read at all: a save built on a stale coupon, or creating a redemption that exists, is
refused by the store and decided again on a fresh read. What a command relied on without writing
it (a refusal) is read before the batch is saved. Each test uses two ledgers on one database: two
processes, the second writing behind the first's back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from uuid import UUID

import pytest

from api.database import eventsourcing_env
from ledger import memory
from ledger.application import CouponLedger
from ledger.commands import Receipt
from ledger.errors import LedgerError
from tests.support.commands import activate, apply, create_coupon, deactivate
from tests.support.postgres import ledger_with_clock

RETAILER = UUID("00000000-0000-4000-8000-0000000000cd")
SUBTOTAL = Decimal("100.00")


def open_ledger(url: str, open_ledgers: list[CouponLedger]) -> CouponLedger:
    ledger = ledger_with_clock(eventsourcing_env(url, 2, 4), partial(datetime.now, UTC))
    open_ledgers.append(ledger)
    return ledger


def counters(ledger: CouponLedger) -> Callable[[], tuple[int, int]]:
    """(reads, conflicts) of the writer since this call."""
    stats = ledger.writer.stats
    reads, conflicts = stats.reads, stats.conflicts
    return lambda: (stats.reads - reads, stats.conflicts - conflicts)


def test_a_coupon_held_in_memory_is_redeemed_with_no_read(database_url: str, open_ledgers: list[CouponLedger]) -> None:
    ledger = open_ledger(database_url, open_ledgers)
    create_coupon(ledger, RETAILER, "HOT", "fixed", Decimal("5.00"), max_uses=3)
    since = counters(ledger)
    receipts = [apply(ledger, RETAILER, "HOT", SUBTOTAL, idempotency_key=f"k{i}") for i in range(3)]
    assert all(isinstance(r, Receipt) and not r.replayed for r in receipts)
    assert since() == (0, 0)
    # The fourth is refused on the coupon as held, which the refusal did not write: read, then answered.
    with pytest.raises(LedgerError) as refused:
        apply(ledger, RETAILER, "HOT", SUBTOTAL)
    assert refused.value.code == "USAGE_LIMIT_REACHED"
    assert since() == (1, 0)
    assert ledger.get_coupon(RETAILER, "HOT").uses_count == 3


def test_a_refusal_on_a_coupon_another_process_changed_is_decided_again_on_a_fresh_read(
    database_url: str, open_ledgers: list[CouponLedger]
) -> None:
    first, second = open_ledger(database_url, open_ledgers), open_ledger(database_url, open_ledgers)
    create_coupon(first, RETAILER, "BACK", "fixed", Decimal("5.00"))
    deactivate(first, RETAILER, "BACK")  # the first holds it inactive
    activate(second, RETAILER, "BACK")
    since = counters(first)
    receipt = apply(first, RETAILER, "BACK", SUBTOTAL)
    assert isinstance(receipt, Receipt) and receipt.quote.discount_amount == Decimal("5.00")
    assert since() == (1, 0)  # the refusal's read found it active; the redemption then saved at once
    assert second.get_coupon(RETAILER, "BACK").uses_count == 1


def test_a_key_another_process_redeemed_is_replayed_not_redeemed_again(
    database_url: str, open_ledgers: list[CouponLedger]
) -> None:
    first, second = open_ledger(database_url, open_ledgers), open_ledger(database_url, open_ledgers)
    create_coupon(first, RETAILER, "ONCE", "fixed", Decimal("5.00"), max_uses=5)
    apply(first, RETAILER, "ONCE", SUBTOTAL, idempotency_key="warm")  # the first now holds the coupon
    original = apply(second, RETAILER, "ONCE", SUBTOTAL, idempotency_key="shared")
    since = counters(first)
    again = apply(first, RETAILER, "ONCE", SUBTOTAL, idempotency_key="shared")
    assert isinstance(original, Receipt) and isinstance(again, Receipt)
    assert again.replayed and again.redemption_id == original.redemption_id
    # Taken as new and refused by the store (the coupon had moved too), read afresh, replayed.
    assert since() == (1, 1)
    assert first.get_coupon(RETAILER, "ONCE").uses_count == 2


def test_a_key_redeemed_in_this_process_is_replayed_after_one_read(
    database_url: str, open_ledgers: list[CouponLedger]
) -> None:
    ledger = open_ledger(database_url, open_ledgers)
    create_coupon(ledger, RETAILER, "RETRY", "fixed", Decimal("5.00"))
    original = apply(ledger, RETAILER, "RETRY", SUBTOTAL, idempotency_key="again")
    since = counters(ledger)
    again = apply(ledger, RETAILER, "RETRY", SUBTOTAL, idempotency_key="again")
    assert again.replayed and again.redemption_id == original.redemption_id
    assert since() == (1, 0)  # remembered as stored here: read, not taken as new
    assert ledger.get_coupon(RETAILER, "RETRY").uses_count == 1


def test_once_another_process_writes_every_batch_reads_first(
    database_url: str, open_ledgers: list[CouponLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = open_ledger(database_url, open_ledgers), open_ledger(database_url, open_ledgers)
    create_coupon(first, RETAILER, "SHARED", "fixed", Decimal("5.00"))
    create_coupon(first, RETAILER, "OTHER", "fixed", Decimal("5.00"))
    apply(second, RETAILER, "SHARED", SUBTOTAL)
    since = counters(first)
    apply(first, RETAILER, "SHARED", SUBTOTAL)  # decided on the coupon as held: refused by the store
    assert since() == (1, 1)
    for _ in range(3):  # now read before each decision: no more refused saves
        apply(second, RETAILER, "SHARED", SUBTOTAL)
        apply(first, RETAILER, "SHARED", SUBTOTAL)
    apply(first, RETAILER, "OTHER", SUBTOTAL)  # every batch, whatever coupon it holds
    assert since() == (5, 1)
    assert first.get_coupon(RETAILER, "SHARED").uses_count == 8
    # Ten seconds after the last write found elsewhere, batches decide from memory again.
    later = memory.monotonic() + memory.READ_FIRST_SECONDS
    monkeypatch.setattr(memory, "monotonic", lambda: later)
    apply(first, RETAILER, "OTHER", SUBTOTAL)
    assert since() == (5, 1)
