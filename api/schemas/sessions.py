"""Checkout sessions: a server-priced cart, its coupon hold and its stock holds."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from api.schemas.checkout import Lines, SessionId
from api.schemas.common import Amount, Code, Id, Int, Request, UtcTimestamp


class SessionSync(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"session_id": "cart-8f3a2c", "items": [{"product_id": 1, "quantity": 2}], "subtotal": "48.00"},
                {"items": [{"product_id": 1, "quantity": 1}]},
            ]
        },
    )

    session_id: SessionId | None = Field(
        default=None, description="The client's id for the cart; absent: the server makes one (see the response)."
    )
    items: Lines
    subtotal: Amount | None = Field(
        default=None,
        description="The subtotal the client shows; if sent, it must be the server's (else SUBTOTAL_MISMATCH).",
    )


class SessionCouponRequest(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"code": "SAVE10"}]})

    code: Code
    customer_id: Id | None = Field(
        default=None, description="A stable id of the shopper: required by a coupon with max_uses_per_customer."
    )


class HoldInventoryRequest(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"ttl_seconds": 600}]})

    ttl_seconds: Int(1, 86_400, 600) | None = Field(  # type: ignore[valid-type]
        default=None, description="How long to hold the stock; default and at most: until the session expires."
    )


class SessionLinePublic(BaseModel):
    product_id: int
    name: str
    quantity: int
    unit_price: Amount
    line_total: Amount


class SessionCouponPublic(BaseModel):
    code: str
    customer_id: str | None
    reservation_id: UUID = Field(description="The ledger's hold of one use, for the session's lifetime.")
    discount_amount: Amount
    free_shipping: bool


class HeldItemPublic(BaseModel):
    product_id: int
    quantity: int


class InventoryHoldPublic(BaseModel):
    expires_at: UtcTimestamp
    items: list[HeldItemPublic]


class RefusalPublic(BaseModel):
    code: str = Field(examples=["MIN_ORDER_NOT_MET"])
    message: str
    details: dict[str, Any]


class CouponRemovedPublic(BaseModel):
    code: str
    reason: RefusalPublic = Field(description="Why the coupon no longer applies: the error applying it would give.")


class CheckoutSessionPublic(BaseModel):
    session_id: str
    status: Literal["open", "expired", "completed"]
    items: list[SessionLinePublic]
    subtotal: Amount
    coupon: SessionCouponPublic | None
    discount_amount: Amount
    total: Amount
    inventory_hold: InventoryHoldPublic | None = Field(description="The stock held for the session, while live.")
    expires_at: UtcTimestamp = Field(description="The session, its coupon hold and its stock holds end then.")
    order_id: int | None = Field(description="The order placed from the session (status completed).")
    created_at: UtcTimestamp
    updated_at: UtcTimestamp


class CheckoutSessionSynced(CheckoutSessionPublic):
    coupon_removed: CouponRemovedPublic | None = Field(
        description="The coupon this sync dropped from the session because it no longer applies to the cart."
    )
    client_secret: str | None = Field(
        default=None,
        description=(
            "Only in the answer that created the session (shown once, stored hashed): a publishable-key caller"
            " sends it as X-Client-Secret on every later call on the session, else the session is NOT_FOUND."
            " A secret key needs none."
        ),
        examples=["cs_V1p0s6_secret_9Zx2kq4TtR0mYb1cQe7LwH5uJ3aSdF8g"],
    )
