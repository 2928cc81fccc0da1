"""What a run of events does to the `coupons`, `reservations`, `campaigns` and `redemptions` tables,
coalesced into one INSERT and one UPDATE per table (`CouponChanges`), and the values the read model
refuses."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol

from ledger.domain import Campaign, Coupon, Redemption, Reservation
from ledger.timestamps import to_utc
from projections.campaigns import CampaignRow
from projections.coupon_rows import (
    CONFIRMED,
    EXPIRED,
    HELD,
    RELEASED,
    CouponUpdate,
    NewCoupon,
    NewReservation,
    ReservationEnd,
)
from projections.redemptions import NewRedemption, RedemptionReversal

# The Reservation events that end a hold, and the status each leaves it in.
ENDING_EVENTS: dict[type[Any], str] = {
    Reservation.Confirmed: CONFIRMED,
    Reservation.Released: RELEASED,
    Reservation.Expired: EXPIRED,
}


# A coupon's Updated event names its fields; these are their columns (the others share the name).
COLUMN_OF_FIELD = {"expires_at": "expiry_date"}
UPDATABLE_COLUMNS = frozenset(
    {
        "min_order_value",
        "starts_at",
        "expiry_date",
        "max_uses",
        "max_uses_per_customer",
        "max_discount_amount",
        "scope",
        "public",
        "archived_at",
    }
)


class UnstorableValue(ValueError):
    """A value PostgreSQL would store but could not give back (psycopg reads timestamptz as a
    Python datetime): stored, it would make every list holding the row fail."""


def readable_expiry(expires_at: datetime | None, name: str = "expires_at") -> None:
    if expires_at is None:
        return
    try:
        to_utc(expires_at)
    except ValueError as error:
        raise UnstorableValue(f"{name} {expires_at.isoformat()} {error}") from None


@dataclass
class CouponChanges:
    """What a run of events does to the `coupons` and `reservations` tables, coalesced.

    Applying ``created`` (INSERT) and ``updated`` (UPDATE) gives the same rows as applying
    each event on its own in order: a Created event gives a row with uses_count 0, Activated
    and Deactivated set is_active, Redeemed adds one use, and each of those sets the row's
    version to the event's. An event of any other type changes no row. Events of a coupon
    that has no row change nothing (as an UPDATE of a missing row would).

    Holds likewise (``holds``: INSERT, ``ended``: UPDATE): Reservation.Held gives a row in status
    held; Confirmed, Released and Expired set the status, ended_at (the event's time) and the
    version, Confirmed also the redemption id. The coupon's own hold events (Coupon.Reserved,
    ReservationReleased, ReservationExpired) change no row: the same save records the
    Reservation's, which carry everything the row holds. Redeemed counts a use whether or not it
    confirms a hold.

    Every use also records a Redemption: its Recorded event gives a `redemptions` row
    (``redemptions``), its Reversed event that row's reversal (``reversals``, applied after the
    batch's new rows).
    """

    created: dict[UUID, NewCoupon] = field(default_factory=dict)
    updated: dict[UUID, CouponUpdate] = field(default_factory=dict)
    holds: dict[UUID, NewReservation] = field(default_factory=dict)
    ended: dict[UUID, ReservationEnd] = field(default_factory=dict)
    campaigns: list[CampaignRow] = field(default_factory=list)  # `campaigns` rows: Campaign.Created
    redemptions: list[NewRedemption] = field(default_factory=list)  # Redemption.Recorded
    reversals: list[RedemptionReversal] = field(default_factory=list)  # Redemption.Reversed

    @classmethod
    def of(cls, events: Iterable[DomainEventProtocol[Any]]) -> CouponChanges:
        changes = cls()
        for event in events:
            changes.add(event)
        return changes

    def add(self, event: DomainEventProtocol[Any]) -> None:
        match event:
            case Coupon.Created():
                readable_expiry(event.expires_at)
                readable_expiry(event.starts_at, "starts_at")
                self.updated.pop(event.originator_id, None)  # updates of a missing row: no-ops
                self.created[event.originator_id] = NewCoupon(
                    id=event.originator_id,
                    retailer_id=event.retailer_id,
                    code=event.code,
                    discount_type=event.discount_type,
                    discount_value=event.discount_value,
                    min_order_value=event.min_order_value,
                    expiry_date=event.expires_at,
                    max_uses=event.max_uses,
                    uses_count=0,
                    is_active=event.is_active,
                    created_at=event.timestamp,
                    version=event.originator_version,
                    starts_at=event.starts_at,
                    max_uses_per_customer=event.max_uses_per_customer,
                    max_discount_amount=event.max_discount_amount,
                    scope=event.scope,
                    public=event.public,
                    campaign_id=event.campaign_id,
                )
            case Coupon.Redeemed() | Coupon.RedemptionReversed():
                step = 1 if isinstance(event, Coupon.Redeemed) else -1
                target = self._target(event)
                target.version = event.originator_version
                if isinstance(target, NewCoupon):
                    target.uses_count += step
                else:
                    target.redeemed += step
            case Coupon.Activated() | Coupon.Deactivated():
                target = self._target(event)
                target.version = event.originator_version
                target.is_active = isinstance(event, Coupon.Activated)
            case Coupon.Updated():
                columns = {COLUMN_OF_FIELD.get(name, name): value for name, value in event.changes.items()}
                for name in ("expiry_date", "starts_at"):
                    readable_expiry(columns.get(name), name)
                self._set(event, columns)
            case Coupon.Archived():
                self._set(event, {"archived_at": event.timestamp})
            case Reservation.Held():
                readable_expiry(event.expires_at)
                self.ended.pop(event.originator_id, None)  # updates of a missing row: no-ops
                self.holds[event.originator_id] = NewReservation(
                    id=event.originator_id,
                    retailer_id=event.retailer_id,
                    coupon_id=event.coupon_id,
                    code=event.code,
                    customer_id=event.customer_id,
                    campaign_id=event.campaign_id,
                    status=HELD,
                    discount_amount=event.discount_amount,
                    expires_at=event.expires_at,
                    created_at=event.timestamp,
                    version=event.originator_version,
                )
            case Reservation.Confirmed() | Reservation.Released() | Reservation.Expired():
                self._end_hold(event, ENDING_EVENTS[type(event)])
            case Campaign.Created():
                self.campaigns.append(CampaignRow(event.originator_id, event.retailer_id, event.timestamp))
            case Redemption.Recorded():
                self.redemptions.append(
                    NewRedemption(
                        id=event.originator_id,
                        retailer_id=event.retailer_id,
                        coupon_id=event.coupon_id,
                        code=event.code,
                        campaign_id=event.campaign_id,
                        customer_id=event.customer_id,
                        order_id=event.order_id,
                        occurred_at=event.timestamp,
                        original_subtotal=event.original_subtotal,
                        discount_amount=event.discount_amount,
                        final_total=event.final_total,
                    )
                )
            case Redemption.Reversed():
                self.reversals.append(RedemptionReversal(event.originator_id, event.reversed_at))

    def _end_hold(self, event: Reservation.Confirmed | Reservation.Released | Reservation.Expired, status: str) -> None:
        redemption_id = event.redemption_id if isinstance(event, Reservation.Confirmed) else None
        hold_id = event.originator_id
        target = self.holds.get(hold_id) or self.ended.get(hold_id)
        if target is None:
            target = self.ended[hold_id] = ReservationEnd(hold_id, status, event.timestamp, event.originator_version)
        target.status = status
        target.ended_at = event.timestamp
        target.version = event.originator_version
        if redemption_id is not None:
            target.redemption_id = redemption_id

    def _set(self, event: DomainEventProtocol[Any], columns: dict[str, Any]) -> None:
        unknown = set(columns) - UPDATABLE_COLUMNS
        if unknown:
            raise UnstorableValue(f"no column for {', '.join(sorted(unknown))}")
        target = self._target(event)
        target.version = event.originator_version
        if isinstance(target, NewCoupon):
            for name, value in columns.items():
                setattr(target, name, value)
        else:
            target.columns.update(columns)

    def _target(self, event: DomainEventProtocol[Any]) -> NewCoupon | CouponUpdate:
        coupon_id = event.originator_id
        created = self.created.get(coupon_id)
        if created is not None:
            return created
        update = self.updated.get(coupon_id)
        if update is None:
            update = self.updated[coupon_id] = CouponUpdate(coupon_id, event.originator_version)
        return update
