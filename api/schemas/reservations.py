"""Holds: a use of a coupon reserved during checkout, then confirmed or released."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from api.schemas.common import Amount, Int, Request, UtcTimestamp, text
from api.schemas.redemptions import VALIDATE_EXAMPLES, ApplyRequest, _order_schema
from ledger.commands import Hold
from ledger.domain import (
    DEFAULT_HOLD_SECONDS,
    MAX_HOLD_SECONDS,
    Reservation,
)


class ReserveRequest(ApplyRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=_order_schema(
            [{**VALIDATE_EXAMPLES[0], "ttl_seconds": 900}, {**VALIDATE_EXAMPLES[1], "order_id": "cart-77"}]
        ),
    )

    ttl_seconds: Int(1, MAX_HOLD_SECONDS, DEFAULT_HOLD_SECONDS) = Field(  # type: ignore[valid-type]
        default=DEFAULT_HOLD_SECONDS,
        description="How long the use is held: it counts against every limit until then (default 900, at most 86400).",
    )


class HoldPublic(BaseModel):
    reservation_id: UUID
    code: str
    original_subtotal: Amount
    discount_amount: Amount
    final_total: Amount
    free_shipping: bool
    expires_at: UtcTimestamp
    status: Literal["held"] = "held"

    @classmethod
    def from_hold(cls, hold: Hold) -> HoldPublic:
        quote = hold.quote
        return cls(
            reservation_id=hold.reservation_id,
            code=quote.code,
            original_subtotal=quote.original_subtotal,
            discount_amount=quote.discount_amount,
            final_total=quote.final_total,
            free_shipping=quote.free_shipping,
            expires_at=hold.expires_at,
        )


class ConfirmRequest(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"order_id": "1001"}]})

    order_id: text(1, 100, "1001") | None = Field(  # type: ignore[valid-type]
        default=None, description="The order the use goes to (default: the order_id sent with the hold, if any)."
    )


ReservationStatus = Literal["held", "confirmed", "released", "expired"]


class ReservationPublic(BaseModel):
    reservation_id: UUID
    code: str
    status: ReservationStatus = Field(
        description="held (counting against the limits until expires_at), confirmed, released or expired; "
        "a hold past expires_at is expired at once, even before the sweeper records it."
    )
    original_subtotal: Amount
    discount_amount: Amount
    final_total: Amount
    free_shipping: bool
    expires_at: UtcTimestamp
    customer_id: str | None
    order_id: str | None
    redemption_id: UUID | None = Field(description="The redemption it became, once confirmed.")
    created_at: UtcTimestamp
    ended_at: UtcTimestamp | None = Field(description="When it was confirmed, released or its expiry recorded.")

    @classmethod
    def from_reservation(cls, reservation: Reservation, now: datetime) -> ReservationPublic:
        return cls(
            reservation_id=reservation.id,
            code=reservation.code,
            status="expired" if reservation.is_past_ttl(now) else reservation.status,  # type: ignore[arg-type]
            original_subtotal=reservation.original_subtotal,
            discount_amount=reservation.discount_amount,
            final_total=reservation.final_total,
            free_shipping=reservation.free_shipping,
            expires_at=reservation.expires_at,
            customer_id=reservation.customer_id,
            order_id=reservation.order_id,
            redemption_id=reservation.redemption_id,
            created_at=reservation.created_on,
            ended_at=reservation.ended_at,
        )


class ReleasePublic(ReservationPublic):
    already_ended: bool = Field(description="True when an earlier request (or the sweeper) had already ended it.")
