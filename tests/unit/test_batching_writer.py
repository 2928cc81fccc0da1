"""The batching writer on the in-memory store: commands that share a batch each get their own
answer, a rejected command leaves the others alone, and a lost version race re-decides only
what it must. Each test holds the writer on a first command until the rest have queued, so
they certainly share one batch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest

from ledger.application import CouponLedger
from ledger.batch import Batch
from ledger.commands import Activate, CreateCoupon, Deactivate, Receipt, Redeem
from ledger.domain import FIXED, Coupon, Order
from ledger.errors import CouponInactive, CouponNotFound, IdempotencyKeyReused, LedgerError, MinOrderNotMet
from tests.support.commands import apply, create_coupon, planned, redeem

RETAILER = UUID("00000000-0000-4000-8000-00000000000a")
D = Decimal


class HeldWriter:
    """Occupies the writer with a command that waits, so that what is queued meanwhile forms one batch."""

    def __init__(self, ledger: CouponLedger) -> None:
        self.ledger = ledger
        self.release = threading.Event()
        started = threading.Event()

        def wait(_: Batch) -> None:
            started.set()
            assert self.release.wait(10)

        self.batches_before = ledger.writer.stats.batches
        self.blocker = ledger.writer.submit((), wait)
        assert started.wait(10)

    def apply(self, code: str, subtotal: str, key: str | None = None, order_id: str | None = None) -> Future[Receipt]:
        return self.ledger.writer.submit(*redeem(RETAILER, code, D(subtotal), key, order_id))

    def submit(self, needs: tuple[UUID, ...], decide: Callable[[Batch], Any]) -> Future[Any]:
        return self.ledger.writer.submit(needs, decide)

    def run(self) -> None:
        self.release.set()
        self.blocker.result(10)


@pytest.fixture
def held(ledger: CouponLedger) -> Iterator[HeldWriter]:
    yield HeldWriter(ledger)


def outcome(future: Future[Any]) -> Any:
    error = future.exception(10)
    if error is None:
        return future.result()
    assert isinstance(error, LedgerError), error
    return error.code


def redeemed(ledger: CouponLedger, code: str) -> list[Any]:
    return [e for e in ledger.coupon_events(RETAILER, code) if e.type == "Coupon.Redeemed"]


def test_every_command_of_a_mixed_batch_gets_its_own_answer_and_one_save_holds_them(ledger: CouponLedger) -> None:
    create_coupon(ledger, RETAILER, "OPEN", FIXED, D("5.00"), min_order_value=D("20.00"))
    create_coupon(ledger, RETAILER, "CLOSED", FIXED, D("5.00"), is_active=False)
    first = apply(ledger, RETAILER, "OPEN", D("50.00"), idempotency_key="old-key")
    saves: list[int] = []
    real_save = ledger.save
    ledger.save = lambda *events, **kw: saves.append(len(events)) or real_save(*events, **kw)  # type: ignore[method-assign]
    held = HeldWriter(ledger)

    success = held.apply("OPEN", "50.00")
    inactive = held.apply("CLOSED", "50.00")
    below_minimum = held.apply("OPEN", "10.00")
    replay = held.apply("OPEN", "50.00", key="old-key")
    twin_a = held.apply("OPEN", "60.00", key="new-key")
    twin_b = held.apply("OPEN", "60.00", key="new-key")
    reused_a = held.apply("OPEN", "70.00", key="other-key")
    reused_b = held.apply("OPEN", "71.00", key="other-key")
    unknown = held.apply("NOPE", "50.00")
    held.run()

    assert isinstance(outcome(success), Receipt) and not outcome(success).replayed
    assert outcome(inactive) == CouponInactive.code
    assert outcome(below_minimum) == MinOrderNotMet.code
    assert (outcome(replay).replayed, outcome(replay).redemption_id) == (True, first.redemption_id)
    assert (outcome(twin_a).replayed, outcome(twin_b).replayed) == (False, True)
    assert outcome(twin_a).redemption_id == outcome(twin_b).redemption_id
    assert not outcome(reused_a).replayed
    assert outcome(reused_b) == IdempotencyKeyReused.code
    assert outcome(unknown) == CouponNotFound.code
    assert ledger.writer.stats.batches == held.batches_before + 2  # the blocker's, then all of these
    assert saves == [6]  # three redemptions, each a Redeemed and a Recorded event, in one save
    assert [e.version for e in redeemed(ledger, "OPEN")] == [2, 3, 4, 5]


def test_a_rejected_command_leaves_the_commands_before_and_after_it_on_the_same_coupon_intact(
    ledger: CouponLedger,
) -> None:
    coupon_id = create_coupon(ledger, RETAILER, "SHARED", FIXED, D("5.00"), max_uses=10).id
    held = HeldWriter(ledger)

    def redeem_then_fail(batch: Batch) -> None:
        coupon: Coupon = batch.get(coupon_id)
        coupon.redeem(uuid4(), D("30.00"), ledger.clock(), "half-done")
        raise CouponInactive("changed its mind after changing the coupon")

    before = held.apply("SHARED", "30.00")
    failing = held.submit((coupon_id,), redeem_then_fail)
    after = held.apply("SHARED", "30.00")
    held.run()

    assert outcome(failing) == CouponInactive.code
    assert isinstance(outcome(before), Receipt) and isinstance(outcome(after), Receipt)
    assert [e.data["order_id"] for e in redeemed(ledger, "SHARED")] == [None, None]
    assert ledger.get_coupon(RETAILER, "SHARED").uses_count == 2


def test_a_coupon_returned_to_one_caller_is_not_changed_by_later_commands_of_its_batch(ledger: CouponLedger) -> None:
    create_coupon(ledger, RETAILER, "SNAP", FIXED, D("5.00"))
    held = HeldWriter(ledger)
    deactivated = held.submit(*planned(Deactivate(RETAILER, "SNAP")))
    activated = held.submit(*planned(Activate(RETAILER, "SNAP")))
    applied = held.apply("SNAP", "30.00")
    held.run()

    assert outcome(deactivated).is_active is False
    assert outcome(deactivated).version == 2
    assert outcome(activated).is_active is True
    assert outcome(activated).uses_count == 0
    assert isinstance(outcome(applied), Receipt)
    assert ledger.get_coupon(RETAILER, "SNAP").version == 4


def test_the_limit_holds_within_one_batch(ledger: CouponLedger) -> None:
    create_coupon(ledger, RETAILER, "LAST3", FIXED, D("5.00"), max_uses=3)
    held = HeldWriter(ledger)
    futures = [held.apply("LAST3", "30.00") for _ in range(10)]
    held.run()

    outcomes = [outcome(f) for f in futures]
    assert sum(isinstance(o, Receipt) for o in outcomes) == 3
    assert outcomes[3:] == ["USAGE_LIMIT_REACHED"] * 7
    assert ledger.get_coupon(RETAILER, "LAST3").uses_count == 3


def test_creating_one_code_twice_in_a_batch_creates_it_once(ledger: CouponLedger) -> None:
    held = HeldWriter(ledger)
    first = held.submit(*planned(CreateCoupon(RETAILER, "TWICE", {"discount_type": FIXED, "discount_value": D("5")})))
    second = held.submit(*planned(CreateCoupon(RETAILER, "twice", {"discount_type": FIXED, "discount_value": D("6")})))
    held.run()

    assert outcome(first).discount_value == D("5")
    assert outcome(second) == "COUPON_CODE_TAKEN"
    assert ledger.get_coupon(RETAILER, "TWICE").discount_value == D("5")


def test_a_version_race_lost_to_another_writer_re_decides_only_the_commands_on_that_coupon(
    ledger: CouponLedger,
) -> None:
    contested_id = create_coupon(ledger, RETAILER, "CONTESTED", FIXED, D("5.00"), max_uses=2).id
    create_coupon(ledger, RETAILER, "CALM", FIXED, D("5.00"))
    decisions: list[str] = []
    real_save = ledger.save
    raced: list[bool] = []

    def another_process_takes_a_use_first(*events: Any, **kwargs: Any) -> Any:
        if not raced:
            raced.append(True)
            other: Coupon = ledger.repository.get(contested_id)
            other.redeem(uuid4(), D("30.00"), ledger.clock(), "other-process")
            real_save(other)
        return real_save(*events, **kwargs)

    ledger.save = another_process_takes_a_use_first  # type: ignore[method-assign]
    held = HeldWriter(ledger)

    def counted(code: str) -> Future[Receipt]:
        needs, decide = redeem(RETAILER, code, D("30.00"))

        def decide_and_count(batch: Batch) -> Receipt:
            decisions.append(code)
            return decide(batch)

        return held.submit(needs, decide_and_count)

    calm = counted("CALM")
    contested = [counted("CONTESTED"), counted("CONTESTED")]
    held.run()

    assert isinstance(outcome(calm), Receipt)
    assert isinstance(outcome(contested[0]), Receipt)
    assert outcome(contested[1]) == "USAGE_LIMIT_REACHED"
    assert decisions == ["CALM", "CONTESTED", "CONTESTED", "CONTESTED", "CONTESTED"]
    assert ledger.version_conflicts == 1
    assert ledger.get_coupon(RETAILER, "CONTESTED").uses_count == 2
    assert [e.data["order_id"] for e in redeemed(ledger, "CONTESTED")] == ["other-process", None]
    assert len(redeemed(ledger, "CALM")) == 1


def test_an_async_caller_awaits_its_answer_on_its_own_loop(ledger: CouponLedger) -> None:
    create_coupon(ledger, RETAILER, "ASYNC", FIXED, D("5.00"), max_uses=5)

    async def many() -> list[Receipt | BaseException]:
        calls = [
            ledger.execute_async(Redeem(RETAILER, "ASYNC", Order.of(D("30.00")), idempotency_key=f"k{i}"))
            for i in range(8)
        ]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(many())
    assert sum(isinstance(r, Receipt) for r in results) == 5
    assert all(isinstance(r, Receipt) or getattr(r, "code", None) == "USAGE_LIMIT_REACHED" for r in results)
    assert ledger.get_coupon(RETAILER, "ASYNC").uses_count == 5


def test_a_caller_that_gives_up_before_its_batch_is_not_redeemed(ledger: CouponLedger) -> None:
    create_coupon(ledger, RETAILER, "GONE", FIXED, D("5.00"))
    held = HeldWriter(ledger)
    abandoned = held.apply("GONE", "30.00")
    assert abandoned.cancel()
    kept = held.apply("GONE", "30.00")
    held.run()

    assert isinstance(outcome(kept), Receipt)
    assert len(redeemed(ledger, "GONE")) == 1
