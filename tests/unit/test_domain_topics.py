"""The aggregates and their events keep the topics they have always been stored under.

The library stores each event under ``module:QualName`` of its class and each snapshot with its
aggregate's topic; every row stored so far says ``ledger.domain:...``. Rows stored that way read
back (the upcasting tests read events and snapshots of older class versions stored under them), and
the rows written today carry the very same topics, so a log never mixes two spellings.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from eventsourcing.domain import Aggregate, CanMutateAggregate
from eventsourcing.utils import get_topic, resolve_topic

from ledger.application import SNAPSHOT_INTERVAL, CouponLedger
from ledger.domain import Campaign, Coupon, CustomerUsage, Redemption, Reservation
from tests.support.commands import (
    activate,
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
    update_coupon,
)
from tests.support.ledger import RETAILER, ManualClock, campaign_codes

D = Decimal
AGGREGATES: tuple[type[Aggregate], ...] = (Coupon, Redemption, Reservation, CustomerUsage, Campaign)

WRITTEN_EVENT_TOPICS = {
    "ledger.domain:Coupon.Created",
    "ledger.domain:Coupon.Updated",
    "ledger.domain:Coupon.Deactivated",
    "ledger.domain:Coupon.Activated",
    "ledger.domain:Coupon.Archived",
    "ledger.domain:Coupon.Redeemed",
    "ledger.domain:Coupon.Reserved",
    "ledger.domain:Coupon.ReservationReleased",
    "ledger.domain:Coupon.ReservationExpired",
    "ledger.domain:Coupon.RedemptionReversed",
    "ledger.domain:Redemption.Recorded",
    "ledger.domain:Redemption.Reversed",
    "ledger.domain:Reservation.Held",
    "ledger.domain:Reservation.Confirmed",
    "ledger.domain:Reservation.Released",
    "ledger.domain:Reservation.Expired",
    "ledger.domain:CustomerUsage.Started",
    "ledger.domain:CustomerUsage.Used",
    "ledger.domain:CustomerUsage.Returned",
    "ledger.domain:CustomerUsage.Reserved",
    "ledger.domain:CustomerUsage.ReservationReleased",
    "ledger.domain:CustomerUsage.ReservationExpired",
    "ledger.domain:Campaign.Created",
    "ledger.domain:Campaign.CodesGenerated",
    "ledger.domain:Campaign.Used",
    "ledger.domain:Campaign.Returned",
    "ledger.domain:Campaign.Reserved",
    "ledger.domain:Campaign.ReservationReleased",
    "ledger.domain:Campaign.ReservationExpired",
}
STORED_TOPICS = WRITTEN_EVENT_TOPICS | {
    "ledger.domain:Coupon",
    "ledger.domain:Redemption",
    "ledger.domain:Reservation",
    "ledger.domain:CustomerUsage",
    "ledger.domain:Campaign",
    # the bases and the created events the library defines on every aggregate, never triggered here
    "ledger.domain:Coupon.Event",
    "ledger.domain:Redemption.Event",
    "ledger.domain:Redemption.Created",
    "ledger.domain:Reservation.Event",
    "ledger.domain:Reservation.Created",
    "ledger.domain:CustomerUsage.Event",
    "ledger.domain:CustomerUsage.Created",
    "ledger.domain:Campaign.Event",
}


def event_classes(aggregate: type[Aggregate]) -> list[type[Any]]:
    return [v for v in vars(aggregate).values() if isinstance(v, type) and issubclass(v, CanMutateAggregate)]


def test_every_aggregate_and_event_class_has_the_topic_it_is_stored_under() -> None:
    topics = {get_topic(aggregate) for aggregate in AGGREGATES}
    topics |= {get_topic(cls) for aggregate in AGGREGATES for cls in event_classes(aggregate)}
    assert topics == STORED_TOPICS


def test_every_stored_topic_resolves_to_the_class_that_writes_it() -> None:
    for topic in sorted(STORED_TOPICS):
        assert get_topic(resolve_topic(topic)) == topic


def written_topics(ledger: CouponLedger) -> set[str]:
    return {n.topic for n in ledger.recorder.select_notifications(start=1, limit=100_000)}


def test_a_ledger_writes_every_event_under_its_stored_topic_and_reads_it_back(
    ledger: CouponLedger, clock: ManualClock
) -> None:
    template = {"discount_type": "fixed", "discount_value": D("5.00"), "max_uses_per_customer": 10}
    campaign = create_campaign(ledger, RETAILER, "Topics", "TOP", 1, template, max_redemptions=50)
    (code,) = campaign_codes(ledger, campaign.id)
    released = reserve(ledger, RETAILER, code, D("40.00"), customer_id="alice")
    release(ledger, RETAILER, released.reservation_id)
    confirmed = reserve(ledger, RETAILER, code, D("40.00"), customer_id="alice")
    confirm(ledger, RETAILER, confirmed.reservation_id)
    reversed_use = apply(ledger, RETAILER, code, D("40.00"), customer_id="alice")
    reverse(ledger, RETAILER, reversed_use.redemption_id, "returned")
    expired = reserve(ledger, RETAILER, code, D("40.00"), customer_id="alice", ttl_seconds=60)
    clock.advance(timedelta(minutes=2))
    assert expire_reservations(ledger, [expired.reservation_id]) == 1
    update_coupon(ledger, RETAILER, code, {"max_uses": 40})
    deactivate(ledger, RETAILER, code)
    activate(ledger, RETAILER, code)
    archive(ledger, RETAILER, code)

    assert written_topics(ledger) == WRITTEN_EVENT_TOPICS
    read = ledger.get_coupon(RETAILER, code, archived=True)
    assert (read.uses_count, read.holds, read.max_uses, read.archived) == (1, {}, 40, True)
    assert ledger.get_campaign(RETAILER, campaign.id).redemptions == 1
    assert ledger.get_redemption(RETAILER, reversed_use.redemption_id).is_reversed
    assert ledger.get_reservation(RETAILER, expired.reservation_id).status == "expired"


def test_a_snapshot_names_its_aggregate_by_the_stored_topic_and_reads_back(ledger: CouponLedger) -> None:
    coupon = create_coupon(ledger, RETAILER, "SNAPTOPIC", "percentage", D("10"))
    for _ in range(SNAPSHOT_INTERVAL):
        apply(ledger, RETAILER, "SNAPTOPIC", D("20.00"))
    assert ledger.snapshots is not None
    (stored,) = ledger.snapshots.recorder.select_events(coupon.id)
    assert stored.topic == "eventsourcing.domain:Snapshot"
    assert ledger.mapper.transcoder.decode(stored.state)["topic"] == "ledger.domain:Coupon"
    assert ledger.repository.get(coupon.id).uses_count == SNAPSHOT_INTERVAL
