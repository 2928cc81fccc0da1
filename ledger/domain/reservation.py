"""A hold of one use of a coupon during a checkout."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.clock import OneClock
from ledger.domain.values import (
    RESERVATION_CONFIRMED,
    RESERVATION_EXPIRED,
    RESERVATION_HELD,
    RESERVATION_RELEASED,
    Quote,
)


class Reservation(Aggregate):
    """A hold of one use of a coupon until ``expires_at``, at the price it was checked at.

    held -> confirmed (a Redemption; the use is counted as the hold ends), released (given back),
    or expired (its TTL passed; recorded afterwards by the sweeper, but it stops counting at
    expires_at whether recorded or not)."""

    __module__ = "ledger.domain"  # keeps the stored topics: see ledger/domain/__init__.py

    class Held(OneClock, Aggregate.Created):
        retailer_id: UUID
        coupon_id: UUID
        code: str
        idempotency_key: str | None
        request_fingerprint: str
        original_subtotal: Decimal
        discount_amount: Decimal
        final_total: Decimal
        free_shipping: bool
        order_id: str | None
        customer_id: str | None
        campaign_id: UUID | None
        expires_at: datetime

    class Confirmed(OneClock, Aggregate.Event):
        redemption_id: UUID
        order_id: str | None

    class Released(OneClock, Aggregate.Event):
        pass

    class Expired(OneClock, Aggregate.Event):
        pass

    @event(Held)
    def __init__(
        self,
        id: UUID,  # noqa: A002 - the library takes an explicit aggregate id by this name
        retailer_id: UUID,
        coupon_id: UUID,
        code: str,
        idempotency_key: str | None,
        request_fingerprint: str,
        original_subtotal: Decimal,
        discount_amount: Decimal,
        final_total: Decimal,
        free_shipping: bool,
        order_id: str | None,
        customer_id: str | None,
        campaign_id: UUID | None,
        expires_at: datetime,
    ) -> None:
        self.retailer_id = retailer_id
        self.coupon_id = coupon_id
        self.code = code
        self.idempotency_key = idempotency_key
        self.request_fingerprint = request_fingerprint
        self.original_subtotal = original_subtotal
        self.discount_amount = discount_amount
        self.final_total = final_total
        self.free_shipping = free_shipping
        self.order_id = order_id
        self.customer_id = customer_id
        self.campaign_id = campaign_id
        self.expires_at = expires_at
        self.status = RESERVATION_HELD
        self.redemption_id: UUID | None = None

    @property
    def ended_at(self) -> datetime | None:
        """When it was confirmed, released or its expiry recorded (its last event: nothing follows an end)."""
        return None if self.status == RESERVATION_HELD else self.modified_on

    def is_live(self, now: datetime) -> bool:
        return self.status == RESERVATION_HELD and now < self.expires_at

    def is_past_ttl(self, now: datetime) -> bool:
        """Still marked held, but its TTL has passed: it no longer counts, its expiry is not recorded yet."""
        return self.status == RESERVATION_HELD and now >= self.expires_at

    def quote(self) -> Quote:
        return Quote(self.code, self.original_subtotal, self.discount_amount, self.final_total, self.free_shipping)

    @event(Confirmed)
    def confirm(self, redemption_id: UUID, order_id: str | None) -> None:
        self.status = RESERVATION_CONFIRMED
        self.redemption_id = redemption_id
        if order_id is not None:
            self.order_id = order_id

    @event(Released)
    def release(self) -> None:
        self.status = RESERVATION_RELEASED

    @event(Expired)
    def expire(self) -> None:
        self.status = RESERVATION_EXPIRED
