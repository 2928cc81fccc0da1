"""Holds: reserve, confirm, release and expiry in the ledger, on the in-memory store.

A live hold counts against max_uses, the per-customer limit and the campaign's budget exactly like
a use; a hold past its TTL stops counting at once, before any ReservationExpired is recorded.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import uuid4

import pytest

from ledger.application import CouponLedger
from ledger.domain import Campaign, Coupon, CustomerUsage, Reservation, customer_usage_id_for
from tests.support.commands import (
    apply,
    archive,
    confirm,
    create_campaign,
    create_coupon,
    deactivate,
    expire_reservations,
    release,
    reserve,
    reverse,
)
from tests.support.ledger import OTHER_RETAILER, RETAILER, D, ManualClock, code_of, data_of, event_types, served, status
from tests.support.stored_events import CREATED_AT, store

MINUTE = timedelta(minutes=1)


def make(ledger: CouponLedger, code: str = "HOLD10", **terms: Any) -> None:
    create_coupon(ledger, RETAILER, code, "percentage", D("10"), **terms)


def test_a_live_hold_counts_against_max_uses_and_stops_counting_at_its_ttl(
    ledger: CouponLedger, clock: ManualClock
) -> None:
    make(ledger, max_uses=2)
    first = reserve(ledger, RETAILER, "hold10", D("50.00"), ttl_seconds=60)
    reserve(ledger, RETAILER, "HOLD10", D("80.00"), ttl_seconds=600)
    assert (first.quote.discount_amount, first.expires_at) == (D("5.00"), clock() + MINUTE)
    assert status(ledger, "HOLD10", clock) == "count_expired"
    assert code_of(lambda: apply(ledger, RETAILER, "HOLD10", D("50.00"))) == "USAGE_LIMIT_REACHED"
    assert code_of(lambda: reserve(ledger, RETAILER, "HOLD10", D("50.00"))) == "USAGE_LIMIT_REACHED"
    assert code_of(lambda: ledger.validate(RETAILER, "HOLD10", D("50.00"))) == "USAGE_LIMIT_REACHED"

    clock.advance(MINUTE)  # the first hold's TTL has passed; nothing has recorded its expiry
    assert "Coupon.ReservationExpired" not in event_types(ledger, "HOLD10")
    assert ledger.get_coupon(RETAILER, "HOLD10").held(clock()) == 1
    assert status(ledger, "HOLD10", clock) == "active"
    apply(ledger, RETAILER, "HOLD10", D("50.00"))
    assert code_of(lambda: apply(ledger, RETAILER, "HOLD10", D("50.00"))) == "USAGE_LIMIT_REACHED"


def test_confirm_turns_the_hold_into_a_redemption_once(ledger: CouponLedger, clock: ManualClock) -> None:
    make(ledger, max_uses=1)
    hold = reserve(ledger, RETAILER, "HOLD10", D("40.00"), order_id="o-1")
    receipt = confirm(ledger, RETAILER, hold.reservation_id)
    assert (receipt.replayed, receipt.quote) == (False, hold.quote)
    coupon = ledger.get_coupon(RETAILER, "HOLD10")
    assert (coupon.uses_count, coupon.held(clock()), coupon.holds) == (1, 0, {})
    redemption = ledger.get_redemption(RETAILER, receipt.redemption_id)
    assert (redemption.order_id, redemption.discount_amount, redemption.code) == ("o-1", D("4.00"), "HOLD10")
    reservation = ledger.get_reservation(RETAILER, hold.reservation_id)
    assert (reservation.status, reservation.redemption_id) == ("confirmed", receipt.redemption_id)
    assert reservation.ended_at is not None

    again = confirm(ledger, RETAILER, hold.reservation_id, order_id="o-2")
    assert (again.replayed, again.redemption_id) == (True, receipt.redemption_id)
    assert ledger.get_coupon(RETAILER, "HOLD10").uses_count == 1
    assert event_types(ledger, "HOLD10") == ["Coupon.Created", "Coupon.Reserved", "Coupon.Redeemed"]
    redeemed = ledger.coupon_events(RETAILER, "HOLD10")[-1].data
    assert redeemed["reservation_id"] == str(hold.reservation_id)

    # The redemption is an ordinary one: reversing it gives the use back.
    reverse(ledger, RETAILER, receipt.redemption_id, "cancelled")
    assert ledger.get_coupon(RETAILER, "HOLD10").uses_count == 0
    assert code_of(lambda: release(ledger, RETAILER, hold.reservation_id)) == "INVALID_TRANSITION"


def test_confirm_with_an_order_id_overrides_the_held_one(ledger: CouponLedger) -> None:
    make(ledger)
    hold = reserve(ledger, RETAILER, "HOLD10", D("40.00"), order_id="cart-1")
    receipt = confirm(ledger, RETAILER, hold.reservation_id, order_id="order-9")
    assert ledger.get_redemption(RETAILER, receipt.redemption_id).order_id == "order-9"


def test_release_gives_the_use_back_and_is_idempotent(ledger: CouponLedger, clock: ManualClock) -> None:
    make(ledger, max_uses=1)
    hold = reserve(ledger, RETAILER, "HOLD10", D("40.00"))
    released = release(ledger, RETAILER, hold.reservation_id)
    assert (released.status, released.already) == ("released", False)
    assert status(ledger, "HOLD10", clock) == "active"
    again = release(ledger, RETAILER, hold.reservation_id)
    assert (again.status, again.already) == ("released", True)
    assert code_of(lambda: confirm(ledger, RETAILER, hold.reservation_id)) == "INVALID_TRANSITION"
    apply(ledger, RETAILER, "HOLD10", D("40.00"))
    assert event_types(ledger, "HOLD10") == [
        "Coupon.Created",
        "Coupon.Reserved",
        "Coupon.ReservationReleased",
        "Coupon.Redeemed",
    ]


def test_past_its_ttl_a_hold_cannot_be_confirmed_and_releasing_it_records_the_expiry(
    ledger: CouponLedger, clock: ManualClock
) -> None:
    make(ledger, max_uses=1)
    hold = reserve(ledger, RETAILER, "HOLD10", D("40.00"), ttl_seconds=30)
    clock.advance(timedelta(seconds=30))
    error_code = code_of(lambda: confirm(ledger, RETAILER, hold.reservation_id))
    assert error_code == "RESERVATION_EXPIRED"
    assert ledger.get_coupon(RETAILER, "HOLD10").uses_count == 0
    released = release(ledger, RETAILER, hold.reservation_id)
    assert (released.status, released.already) == ("expired", False)
    assert event_types(ledger, "HOLD10")[-1] == "Coupon.ReservationExpired"
    assert code_of(lambda: confirm(ledger, RETAILER, hold.reservation_id)) == "RESERVATION_EXPIRED"
    assert release(ledger, RETAILER, hold.reservation_id).already is True


def test_expire_reservations_records_only_holds_past_their_ttl(ledger: CouponLedger, clock: ManualClock) -> None:
    make(ledger, max_uses=5, max_uses_per_customer=1)
    short = reserve(ledger, RETAILER, "HOLD10", D("40.00"), ttl_seconds=10, customer_id="alice")
    long = reserve(ledger, RETAILER, "HOLD10", D("40.00"), ttl_seconds=100, customer_id="bob")
    confirmed = reserve(ledger, RETAILER, "HOLD10", D("40.00"), ttl_seconds=10, customer_id="carol")
    confirm(ledger, RETAILER, confirmed.reservation_id)
    clock.advance(timedelta(seconds=10))
    ids = [short.reservation_id, long.reservation_id, confirmed.reservation_id, uuid4()]
    assert expire_reservations(ledger, ids) == 1
    assert expire_reservations(ledger, ids) == 0
    assert ledger.get_reservation(RETAILER, short.reservation_id).status == "expired"
    assert ledger.get_reservation(RETAILER, long.reservation_id).status == "held"
    coupon = ledger.get_coupon(RETAILER, "HOLD10")
    assert set(coupon.holds) == {str(long.reservation_id)}
    usage = ledger._get(customer_usage_id_for(coupon.id, "alice"), CustomerUsage)
    assert usage is not None and usage.holds == {}
    apply(ledger, RETAILER, "HOLD10", D("40.00"), customer_id="alice")  # alice's hold no longer counts


def test_a_reservation_is_only_its_retailers(ledger: CouponLedger) -> None:
    make(ledger)
    hold = reserve(ledger, RETAILER, "HOLD10", D("40.00"))
    for call in (partial(confirm, ledger), partial(release, ledger), ledger.get_reservation):
        assert code_of(lambda call=call: call(OTHER_RETAILER, hold.reservation_id)) == "RESERVATION_NOT_FOUND"
    assert code_of(lambda: confirm(ledger, RETAILER, uuid4())) == "RESERVATION_NOT_FOUND"
    assert ledger.get_reservation(RETAILER, hold.reservation_id).status == "held"


def test_a_repeated_idempotency_key_replays_the_hold(ledger: CouponLedger, clock: ManualClock) -> None:
    make(ledger, max_uses=3)
    first = reserve(ledger, RETAILER, "HOLD10", D("40.00"), idempotency_key="k1", ttl_seconds=60)
    clock.advance(timedelta(seconds=5))
    again = reserve(ledger, RETAILER, "hold10", D("40.00"), idempotency_key="k1", ttl_seconds=60)
    assert (again.replayed, again.reservation_id, again.expires_at) == (True, first.reservation_id, first.expires_at)
    assert ledger.get_coupon(RETAILER, "HOLD10").held(clock()) == 1
    call = partial(reserve, ledger)
    for changed in ({"ttl_seconds": 61}, {"customer_id": "alice"}, {"order_id": "x"}):
        assert code_of(
            lambda changed=changed: call(RETAILER, "HOLD10", D("40.00"), idempotency_key="k1", **changed)
        ) == ("IDEMPOTENCY_KEY_REUSED")
    # Holds and redemptions have their own keys: the same key on apply is another redemption.
    assert apply(ledger, RETAILER, "HOLD10", D("40.00"), idempotency_key="k1").replayed is False


@pytest.mark.parametrize("ttl", [0, -1, 86_401, True])
def test_the_ttl_is_1_to_86400_seconds(ledger: CouponLedger, ttl: int) -> None:
    make(ledger)
    assert code_of(lambda: reserve(ledger, RETAILER, "HOLD10", D("40.00"), ttl_seconds=ttl)) == "VALIDATION_FAILED"


def test_the_default_ttl_is_900_seconds_and_a_day_is_allowed(ledger: CouponLedger, clock: ManualClock) -> None:
    make(ledger)
    assert reserve(ledger, RETAILER, "HOLD10", D("40.00")).expires_at == clock() + timedelta(seconds=900)
    assert reserve(ledger, RETAILER, "HOLD10", D("40.00"), ttl_seconds=86_400).expires_at == clock() + timedelta(days=1)


def test_holds_count_against_the_per_customer_limit(ledger: CouponLedger, clock: ManualClock) -> None:
    make(ledger, max_uses_per_customer=1)
    hold = reserve(ledger, RETAILER, "HOLD10", D("40.00"), customer_id="alice")
    assert code_of(lambda: apply(ledger, RETAILER, "HOLD10", D("40.00"), customer_id="alice")) == (
        "CUSTOMER_LIMIT_REACHED"
    )
    assert code_of(lambda: reserve(ledger, RETAILER, "HOLD10", D("40.00"), customer_id="alice")) == (
        "CUSTOMER_LIMIT_REACHED"
    )
    assert code_of(lambda: reserve(ledger, RETAILER, "HOLD10", D("40.00"))) == "CUSTOMER_ID_REQUIRED"
    apply(ledger, RETAILER, "HOLD10", D("40.00"), customer_id="bob")
    confirm(ledger, RETAILER, hold.reservation_id)
    coupon_id = ledger.get_coupon(RETAILER, "HOLD10").id
    usage = ledger._get(customer_usage_id_for(coupon_id, "alice"), CustomerUsage)
    assert usage is not None and (usage.uses, usage.holds) == (1, {})
    assert code_of(lambda: apply(ledger, RETAILER, "HOLD10", D("40.00"), customer_id="alice")) == (
        "CUSTOMER_LIMIT_REACHED"
    )


def test_holds_count_against_a_campaigns_budgets(ledger: CouponLedger, clock: ManualClock) -> None:
    template = {"discount_type": "fixed", "discount_value": D("30.00")}
    campaign = create_campaign(ledger, RETAILER, "Holds", "HC", 3, template, max_redemptions=2)
    codes = sorted(c.code for c in _campaign_coupons(ledger, campaign))
    reserve(ledger, RETAILER, codes[0], D("50.00"), ttl_seconds=60)
    reserve(ledger, RETAILER, codes[1], D("50.00"), ttl_seconds=120)
    assert code_of(lambda: apply(ledger, RETAILER, codes[2], D("50.00"))) == "CAMPAIGN_BUDGET_EXHAUSTED"
    clock.advance(MINUTE)
    apply(ledger, RETAILER, codes[2], D("50.00"))
    assert ledger.get_campaign(RETAILER, campaign.id).redemptions == 1

    budget = create_campaign(ledger, RETAILER, "Budget", "BC", 2, template, max_discount_total=D("50.00"))
    first, second = sorted(c.code for c in _campaign_coupons(ledger, budget))
    held = reserve(ledger, RETAILER, first, D("50.00"))
    assert code_of(lambda: apply(ledger, RETAILER, second, D("50.00"))) == "CAMPAIGN_BUDGET_EXHAUSTED"
    assert apply(ledger, RETAILER, second, D("20.00")).quote.discount_amount == D("20.00")
    confirm(ledger, RETAILER, held.reservation_id)
    state = ledger.get_campaign(RETAILER, budget.id)
    assert (state.redemptions, state.discount_total, state.holds, state.held_discounts) == (2, D("50.00"), {}, {})


def _campaign_coupons(ledger: CouponLedger, campaign: Campaign) -> list[Coupon]:
    """The campaign's coupons, found by replaying its codes from the store (no read model here)."""
    found = []
    for notification in ledger.recorder.select_notifications(start=1, limit=100_000):
        if notification.topic == "ledger.domain:Coupon.Created":
            coupon = ledger.repository.get(notification.originator_id)
            if isinstance(coupon, Coupon) and coupon.campaign_id == campaign.id:
                found.append(coupon)
    return found


def test_reserve_can_replace_a_hold_in_the_same_save(ledger: CouponLedger, clock: ManualClock) -> None:
    make(ledger, max_uses=1, min_order_value=D("30.00"))
    first = reserve(ledger, RETAILER, "HOLD10", D("40.00"))
    second = reserve(ledger, RETAILER, "HOLD10", D("60.00"), release=first.reservation_id)
    assert ledger.get_reservation(RETAILER, first.reservation_id).status == "released"
    assert ledger.get_coupon(RETAILER, "HOLD10").holds.keys() == {str(second.reservation_id)}
    # A replacement that fails leaves the old hold as it was.
    refused = partial(reserve, ledger)
    assert code_of(lambda: refused(RETAILER, "HOLD10", D("10.00"), release=second.reservation_id)) == (
        "MIN_ORDER_NOT_MET"
    )
    assert ledger.get_reservation(RETAILER, second.reservation_id).status == "held"
    # Releasing a hold that is no longer held (or not there at all) is ignored.
    third = reserve(ledger, RETAILER, "HOLD10", D("60.00"), release=second.reservation_id)
    reserve(ledger, RETAILER, "HOLD10", D("60.00"), release=third.reservation_id)
    assert ledger.get_reservation(RETAILER, first.reservation_id).status == "released"


def test_a_hold_on_a_missing_or_archived_coupon(ledger: CouponLedger) -> None:
    assert code_of(lambda: reserve(ledger, RETAILER, "NOPE", D("10.00"))) == "COUPON_NOT_FOUND"
    assert code_of(lambda: reserve(ledger, RETAILER, "no such code!", D("10.00"))) == "COUPON_NOT_FOUND"
    make(ledger)
    hold = reserve(ledger, RETAILER, "HOLD10", D("40.00"))
    archive(ledger, RETAILER, "HOLD10")
    assert code_of(lambda: confirm(ledger, RETAILER, hold.reservation_id)) == "COUPON_NOT_FOUND"
    assert release(ledger, RETAILER, hold.reservation_id).status == "released"


def test_a_hold_is_honoured_when_the_coupon_is_deactivated_meanwhile(ledger: CouponLedger) -> None:
    make(ledger)
    hold = reserve(ledger, RETAILER, "HOLD10", D("40.00"))
    deactivate(ledger, RETAILER, "HOLD10")
    assert confirm(ledger, RETAILER, hold.reservation_id).quote.discount_amount == D("4.00")


def test_holds_survive_snapshots(clock: ManualClock) -> None:
    ledger = CouponLedger(clock=clock)
    make(ledger, max_uses=500)
    holds = [reserve(ledger, RETAILER, "HOLD10", D("40.00"), ttl_seconds=600) for _ in range(3)]
    for _ in range(120):  # past SNAPSHOT_INTERVAL: the coupon is read from a snapshot with its holds
        apply(ledger, RETAILER, "HOLD10", D("40.00"))
    assert ledger.snapshots is not None
    coupon_id = ledger.get_coupon(RETAILER, "HOLD10").id
    snapshots = list(ledger.snapshots.get(coupon_id))
    assert snapshots
    read = snapshots[-1].mutate(None)
    assert isinstance(read, Coupon)
    assert read.holds.keys() == {str(h.reservation_id) for h in holds}
    assert read.held(clock()) == 3
    confirm(ledger, RETAILER, holds[0].reservation_id)
    assert ledger.get_coupon(RETAILER, "HOLD10").held(clock()) == 2


def test_a_coupon_snapshot_from_before_holds_loads_without_any(ledger: CouponLedger, clock: ManualClock) -> None:
    make(ledger, code="V2SNAP", max_uses=3)
    coupon = ledger.get_coupon(RETAILER, "V2SNAP")
    snapshot = Coupon.Snapshot.take(coupon)
    state = {k: v for k, v in snapshot.state.items() if k != "holds"}
    state["class_version"] = 2
    stored = store(
        ledger,
        coupon.id,
        coupon.version,
        "eventsourcing.domain:Snapshot",
        {"timestamp": CREATED_AT, "topic": "ledger.domain:Coupon", "state": state},
    )
    assert ledger.snapshots is not None
    ledger.snapshots.recorder.insert_events([stored])
    read = ledger.repository.get(coupon.id)
    assert read.holds == {}
    reserve(ledger, RETAILER, "V2SNAP", D("40.00"))
    assert ledger.get_coupon(RETAILER, "V2SNAP").held(clock()) == 1


def test_reservation_events_carry_what_the_read_model_needs(ledger: CouponLedger) -> None:
    make(ledger)
    hold = reserve(ledger, RETAILER, "HOLD10", D("40.00"), customer_id="alice", order_id="o-7")
    reservation = ledger.get_reservation(RETAILER, hold.reservation_id)
    assert isinstance(reservation, Reservation)
    assert (reservation.code, reservation.customer_id, reservation.order_id, reservation.status) == (
        "HOLD10",
        "alice",
        "o-7",
        "held",
    )
    assert reservation.discount_amount == Decimal("4.00")
    reserved = ledger.coupon_events(RETAILER, "HOLD10")[-1]
    assert reserved.type == "Coupon.Reserved"
    assert data_of(reserved) == served({"reservation_id": hold.reservation_id, "expires_at": hold.expires_at})
