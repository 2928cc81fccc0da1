"""One use of a coupon, reversible once."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.clock import OneClock
from ledger.domain.values import Quote


class Redemption(Aggregate):
    """One use of a coupon. Keyed redemptions get an id derived from the key, so the
    store refuses a second redemption under the same key. Reversed at most once."""

    __module__ = "ledger.domain"  # keeps the stored topics: see ledger/domain/__init__.py

    class Recorded(OneClock, Aggregate.Created):
        class_version = 2
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

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["customer_id"] = None
            state["campaign_id"] = None

    class Reversed(OneClock, Aggregate.Event):
        reason: str | None
        reversed_at: datetime

    @event(Recorded)
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
        customer_id: str | None = None,
        campaign_id: UUID | None = None,
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
        self.reversed_at: datetime | None = None
        self.reversal_reason: str | None = None

    @event(Reversed)
    def reverse(self, reason: str | None, reversed_at: datetime) -> None:
        self.reversed_at = reversed_at
        self.reversal_reason = reason

    @property
    def is_reversed(self) -> bool:
        return self.reversed_at is not None

    def quote(self) -> Quote:
        return Quote(self.code, self.original_subtotal, self.discount_amount, self.final_total, self.free_shipping)
