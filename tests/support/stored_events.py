"""Events put in the store past today's code: the history an older version of the code stored (before
coupons had windows, per-customer limits, caps, scopes and campaigns), and redemptions crafted past
every rule, as a buggy writer would save them, for verify to find."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import StoredEvent

from ledger.application import CouponLedger
from ledger.domain import Campaign, CustomerUsage, Redemption, coupon_id_for, customer_usage_id_for, redemption_id_for
from tests.support.commands import apply, archive, reverse, update_coupon
from tests.support.ledger import RETAILER, D, code_of, event_types

CRAFTED_DISCOUNT = D("5.00")
CREATED_AT = datetime(2029, 6, 1, 9, 0, tzinfo=UTC)
V2_DEFAULTS = {
    "starts_at": None,
    "max_uses_per_customer": None,
    "max_discount_amount": None,
    "scope": None,
    "public": False,
    "campaign_id": None,
    "archived": False,
}


def store(ledger: CouponLedger, originator_id: UUID, version: int, topic: str, state: dict[str, Any]) -> StoredEvent:
    return StoredEvent(
        originator_id=originator_id,
        originator_version=version,
        topic=topic,
        state=ledger.mapper.transcoder.encode(state),
    )


def v1_created(ledger: CouponLedger, code: str, **terms: Any) -> StoredEvent:
    state = {
        "timestamp": CREATED_AT,
        "originator_topic": "ledger.domain:Coupon",
        "retailer_id": RETAILER,
        "code": code,
        "discount_type": "percentage",
        "discount_value": Decimal("10"),
        "min_order_value": None,
        "expires_at": None,
        "max_uses": 5,
        "is_active": True,
        **terms,
    }
    return store(ledger, coupon_id_for(RETAILER, code), 1, "ledger.domain:Coupon.Created", state)


def v1_redeemed(ledger: CouponLedger, code: str, version: int, redemption_id: UUID) -> StoredEvent:
    state = {
        "timestamp": CREATED_AT,
        "redemption_id": redemption_id,
        "original_subtotal": Decimal("50.00"),
        "discount_amount": Decimal("5.00"),
        "final_total": Decimal("45.00"),
        "order_id": None,
    }
    return store(ledger, coupon_id_for(RETAILER, code), version, "ledger.domain:Coupon.Redeemed", state)


def v1_fingerprint(code: str, subtotal: str, order_id: str | None) -> str:
    """How the older code fingerprinted a keyed request (code, subtotal and order id only)."""
    request = {"code": code, "subtotal": subtotal, "order_id": order_id}
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def v1_recorded(ledger: CouponLedger, code: str, key: str) -> StoredEvent:
    state = {
        "timestamp": CREATED_AT,
        "originator_topic": "ledger.domain:Redemption",
        "retailer_id": RETAILER,
        "coupon_id": coupon_id_for(RETAILER, code),
        "code": code,
        "idempotency_key": key,
        "request_fingerprint": v1_fingerprint(code, "50.00", None),
        "original_subtotal": Decimal("50.00"),
        "discount_amount": Decimal("5.00"),
        "final_total": Decimal("45.00"),
        "free_shipping": False,
        "order_id": None,
    }
    return store(ledger, redemption_id_for(RETAILER, key), 1, "ledger.domain:Redemption.Recorded", state)


def v1_snapshot(ledger: CouponLedger, code: str, version: int, uses_count: int) -> StoredEvent:
    aggregate_state = {
        "_id": coupon_id_for(RETAILER, code),
        "_version": version,
        "_created_on": CREATED_AT,
        "_modified_on": CREATED_AT,
        "retailer_id": RETAILER,
        "code": code,
        "discount_type": "percentage",
        "discount_value": Decimal("10"),
        "min_order_value": None,
        "expires_at": None,
        "max_uses": 5,
        "is_active": True,
        "uses_count": uses_count,
    }
    state = {"timestamp": CREATED_AT, "topic": "ledger.domain:Coupon", "state": aggregate_state}
    return store(ledger, coupon_id_for(RETAILER, code), version, "eventsourcing.domain:Snapshot", state)


def write_v1_history(ledger: CouponLedger) -> None:
    """OLDCOUPON: created, redeemed under key "old-key" (its Redemption recorded), and redeemed twice
    more without a key; a snapshot at version 4 (as SNAPSHOT_INTERVAL would have taken one)."""
    key_redemption = redemption_id_for(RETAILER, "old-key")
    events = [
        v1_created(ledger, "OLDCOUPON"),
        v1_redeemed(ledger, "OLDCOUPON", 2, key_redemption),
        v1_recorded(ledger, "OLDCOUPON", "old-key"),
        v1_redeemed(ledger, "OLDCOUPON", 3, redemption_id_for(RETAILER, "unkeyed-1")),
        v1_redeemed(ledger, "OLDCOUPON", 4, redemption_id_for(RETAILER, "unkeyed-2")),
    ]
    ledger.recorder.insert_events(events)
    assert ledger.snapshots is not None
    ledger.snapshots.recorder.insert_events([v1_snapshot(ledger, "OLDCOUPON", 4, 3)])


def assert_v1_history_reads_with_defaults(ledger: CouponLedger, now: datetime) -> None:
    """Reads, changes and redeems the history write_v1_history stored."""
    old = ledger.get_coupon(RETAILER, "oldcoupon")
    assert {name: getattr(old, name) for name in V2_DEFAULTS} == V2_DEFAULTS
    assert (old.version, old.uses_count, old.max_uses, old.status(now)) == (4, 3, 5, "active")
    assert [e.type for e in ledger.coupon_events(RETAILER, "OLDCOUPON")][:2] == ["Coupon.Created", "Coupon.Redeemed"]
    assert ledger.coupon_events(RETAILER, "OLDCOUPON")[0].data["public"] is False

    # A retried request of that time still replays (the fingerprint of a request without the new
    # fields is unchanged); the same key with a customer id is another request.
    replay = apply(ledger, RETAILER, "OLDCOUPON", D("50.00"), idempotency_key="old-key")
    assert (replay.replayed, replay.quote.discount_amount) == (True, D("5.00"))
    reused = partial(apply, ledger)
    assert code_of(lambda: reused(RETAILER, "OLDCOUPON", D("50.00"), idempotency_key="old-key", customer_id="c")) == (
        "IDEMPOTENCY_KEY_REUSED"
    )
    redemption = ledger.get_redemption(RETAILER, redemption_id_for(RETAILER, "old-key"))
    assert (redemption.customer_id, redemption.campaign_id, redemption.is_reversed) == (None, None, False)

    # The old coupon takes every new command.
    assert reverse(ledger, RETAILER, redemption.id, "cancelled").already_reversed is False
    assert ledger.get_coupon(RETAILER, "OLDCOUPON").uses_count == 2
    update_coupon(ledger, RETAILER, "OLDCOUPON", {"max_uses_per_customer": 1, "public": True})
    apply(ledger, RETAILER, "OLDCOUPON", D("50.00"), customer_id="alice")
    assert code_of(lambda: apply(ledger, RETAILER, "OLDCOUPON", D("50.00"), customer_id="alice")) == (
        "CUSTOMER_LIMIT_REACHED"
    )
    archive(ledger, RETAILER, "OLDCOUPON")
    assert code_of(lambda: ledger.get_coupon(RETAILER, "OLDCOUPON")) == "COUPON_NOT_FOUND"
    assert event_types(ledger, "OLDCOUPON")[4:] == [
        "Coupon.RedemptionReversed",
        "Coupon.Updated",
        "Coupon.Redeemed",
        "Coupon.Archived",
    ]


def crafted_redemption(
    ledger: CouponLedger,
    retailer_id: UUID,
    code: str,
    customer_id: str | None = None,
    discount: Decimal = CRAFTED_DISCOUNT,
    record_on_usage: bool = True,
    record_on_campaign: bool = True,
) -> UUID:
    """Redeem ``code`` past every rule: the coupon's Redeemed, the Redemption and, as the writer
    would, the customer's usage and the campaign's Used, saved together."""
    coupon = ledger.get_coupon(retailer_id, code, archived=True)
    redemption_id = uuid4()
    coupon._record_redemption(
        redemption_id=redemption_id,
        original_subtotal=D("50.00"),
        discount_amount=discount,
        final_total=D("50.00") - discount,
        order_id=None,
        reservation_id=None,
        customer_id=customer_id,
    )
    redemption = Redemption(
        id=redemption_id,
        retailer_id=retailer_id,
        coupon_id=coupon.id,
        code=coupon.code,
        idempotency_key=None,
        request_fingerprint="crafted",
        original_subtotal=D("50.00"),
        discount_amount=discount,
        final_total=D("50.00") - discount,
        free_shipping=False,
        order_id=None,
        customer_id=customer_id,
        campaign_id=coupon.campaign_id,
    )
    changed: list[object] = [coupon, redemption]
    if customer_id is not None and record_on_usage:
        usage_id = customer_usage_id_for(coupon.id, customer_id)
        usage = ledger._get(usage_id, CustomerUsage) or CustomerUsage(coupon_id=coupon.id, customer_id=customer_id)
        usage.use(redemption_id, None)
        changed.append(usage)
    if coupon.campaign_id is not None and record_on_campaign:
        campaign: Campaign = ledger.repository.get(coupon.campaign_id)
        campaign.use(redemption_id, discount, None)
        changed.append(campaign)
    ledger.save(*changed)  # type: ignore[arg-type]
    return redemption_id
