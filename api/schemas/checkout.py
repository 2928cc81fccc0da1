"""The existing checkout: products, and an order placed with or without a coupon."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from api.schemas.common import MAX_INT32, MAX_JSON_BIGINT, Amount, Code, Int, Request, UtcTimestamp, not_null, text
from api.shop.order_reads import PlacedOrder


class ProductCreate(Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "Wool scarf", "price": "45.00", "stock": 20}]}
    )

    name: text(1, 200, "Wool scarf")  # type: ignore[valid-type]
    price: Amount
    stock: Int(0, MAX_INT32, 20)  # type: ignore[valid-type]


class ProductPublic(BaseModel):
    id: int
    name: str
    price: Amount
    stock: int


class CheckoutItem(Request):
    product_id: Int(1, MAX_JSON_BIGINT, 1)  # type: ignore[valid-type]
    quantity: Int(1, 10_000, 2)  # type: ignore[valid-type]


SESSION_ID_PATTERN = "^[A-Za-z0-9_-]{1,100}$"
SESSION_ID_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 100,
    "pattern": SESSION_ID_PATTERN,
    "description": "A checkout session's id: 1-100 of A-Z a-z 0-9 _ - (the client's, or one the server made).",
    "examples": ["cart-8f3a2c"],
}
SessionId = Annotated[
    str, Field(min_length=1, max_length=100, pattern=SESSION_ID_PATTERN), WithJsonSchema(SESSION_ID_SCHEMA)
]
Lines = Annotated[list[CheckoutItem], Field(min_length=1, max_length=100)]


def _checkout_schema(schema: dict[str, Any]) -> None:
    """Two forms: the cart itself (items, coupon_code optional) or a checkout session."""
    not_null(schema, "items", "coupon_code", "session_id")
    schema["oneOf"] = [
        {"title": "A cart", "required": ["items"], "not": {"required": ["session_id"]}},
        {
            "title": "A checkout session",
            "required": ["session_id"],
            "not": {
                "anyOf": [
                    {"title": "With items", "required": ["items"]},
                    {"title": "With a coupon_code", "required": ["coupon_code"]},
                ]
            },
        },
    ]
    schema["properties"]["session_id"]["description"] = (
        "Place the order from this checkout session (its items, its coupon hold, its stock holds);"
        " then send neither items nor coupon_code."
    )
    schema["examples"] = [
        {"user_id": 42, "items": [{"product_id": 1, "quantity": 2}], "coupon_code": "SAVE10"},
        {"user_id": 42, "session_id": "cart-8f3a2c"},
    ]


class CheckoutRequest(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_checkout_schema)

    user_id: Int(1, MAX_JSON_BIGINT, 42)  # type: ignore[valid-type]
    items: Lines | None = None
    coupon_code: Code | None = None
    session_id: SessionId | None = None

    def form_errors(self) -> list[dict[str, str]]:
        """What the two forms forbid (items or session_id, exactly one; coupon_code only with items)."""
        if self.session_id is None:
            if self.items is None:
                return [{"field": "items", "message": "is required (or session_id, to check out a session)"}]
            return []
        errors = []
        if self.items is not None:
            errors.append({"field": "items", "message": "must not be sent with session_id (the session's are used)"})
        if self.coupon_code is not None:
            errors.append(
                {"field": "coupon_code", "message": "must not be sent with session_id (the session's coupon is used)"}
            )
        return errors


class OrderPublic(BaseModel):
    id: int
    user_id: int
    subtotal: Amount
    total: Amount
    created_at: UtcTimestamp


class OrderWithCouponPublic(OrderPublic):
    discount_amount: Amount
    coupon_code: str
    redemption_id: UUID


def _order_fields_only_required(schema: dict[str, Any]) -> None:
    schema["required"] = list(OrderPublic.model_fields)


class OrderCreated(OrderWithCouponPublic):
    """The documented 201 of a checkout: the seed's order; discount_amount, coupon_code and
    redemption_id are there exactly when the request had a coupon_code."""

    model_config = ConfigDict(json_schema_extra=_order_fields_only_required)


class OrderLinePublic(BaseModel):
    product_id: int
    name: str
    quantity: int
    unit_price: Amount


class OrderDetailPublic(OrderPublic):
    """GET /v1/orders/{id}: the order, its lines when stored, and its coupon when it used one."""

    items: list[OrderLinePublic] | None = Field(
        description=(
            "The lines at the prices paid, for an order placed from a checkout session; null for an order"
            " placed from a cart (the seed's orders keep only their totals)."
        )
    )
    session_id: str | None = Field(description="The checkout session the order was placed from, if any.")
    coupon_code: str | None = Field(description="The coupon redeemed with the order; null without one.")
    discount_amount: Amount | None = Field(description="The coupon's discount; null without a coupon.")
    redemption_id: UUID | None = Field(description="The coupon's redemption (reversible); null without a coupon.")

    @classmethod
    def from_order(cls, order: PlacedOrder) -> OrderDetailPublic:
        coupon = order.coupon
        return cls(
            id=order.id,
            user_id=order.user_id,
            subtotal=order.subtotal,
            total=order.total,
            created_at=order.created_at,
            items=[OrderLinePublic(**vars(line)) for line in order.lines] if order.lines is not None else None,
            session_id=order.session_id,
            coupon_code=coupon.code if coupon is not None else None,
            discount_amount=coupon.discount_amount if coupon is not None else None,
            redemption_id=coupon.redemption_id if coupon is not None else None,
        )
