"""Request and response models. Amounts are Decimals in, two-place strings out."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, WithJsonSchema

from ledger.application import RecordedEvent
from ledger.domain import Coupon, Quote
from ledger.money import format_amount, parse_amount
from projections.coupons import CouponRow

Amount = Annotated[
    Decimal,
    PlainValidator(parse_amount),
    PlainSerializer(format_amount, return_type=str, when_used="json"),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "number"}], "examples": ["150.00"]}),
]


def _assume_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


Timestamp = Annotated[datetime, AfterValidator(_assume_utc)]
Status = Literal["active", "inactive", "time_expired", "count_expired"]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CouponCreate(Request):
    code: str = Field(min_length=1, max_length=100, examples=["SAVE10"])
    discount_type: Literal["percentage", "fixed"]
    discount_value: Amount
    min_order_value: Amount | None = None
    expires_at: Timestamp | None = None
    max_uses: int | None = Field(default=None, ge=1, le=2_000_000_000)
    is_active: bool = True


class CouponPublic(BaseModel):
    id: UUID
    code: str
    discount_type: str
    discount_value: Amount
    min_order_value: Amount | None
    expires_at: datetime | None
    max_uses: int | None
    uses_count: int
    is_active: bool
    status: Status
    created_at: datetime

    @classmethod
    def from_coupon(cls, coupon: Coupon, now: datetime) -> CouponPublic:
        return cls(
            id=coupon.id,
            code=coupon.code,
            discount_type=coupon.discount_type,
            discount_value=coupon.discount_value,
            min_order_value=coupon.min_order_value,
            expires_at=coupon.expires_at,
            max_uses=coupon.max_uses,
            uses_count=coupon.uses_count,
            is_active=coupon.is_active,
            status=coupon.status(now),  # type: ignore[arg-type]
            created_at=coupon.created_on,
        )

    @classmethod
    def from_row(cls, row: CouponRow) -> CouponPublic:
        return cls(
            id=row.id,
            code=row.code,
            discount_type=row.discount_type,
            discount_value=row.discount_value,
            min_order_value=row.min_order_value,
            expires_at=row.expiry_date,
            max_uses=row.max_uses,
            uses_count=row.uses_count,
            is_active=row.is_active,
            status=row.status,  # type: ignore[arg-type]
            created_at=row.created_at,
        )


class CouponPage(BaseModel):
    data: list[CouponPublic]
    next_cursor: str | None


class ValidateRequest(Request):
    code: str = Field(min_length=1, max_length=100)
    subtotal: Amount


class ApplyRequest(ValidateRequest):
    order_id: str | None = Field(default=None, min_length=1, max_length=100)


class QuotePublic(BaseModel):
    valid: Literal[True] = True
    code: str
    original_subtotal: Amount
    discount_amount: Amount
    final_total: Amount
    free_shipping: bool

    @classmethod
    def from_quote(cls, quote: Quote) -> QuotePublic:
        return cls(
            code=quote.code,
            original_subtotal=quote.original_subtotal,
            discount_amount=quote.discount_amount,
            final_total=quote.final_total,
            free_shipping=quote.free_shipping,
        )


class RedemptionPublic(BaseModel):
    redemption_id: UUID
    code: str
    original_subtotal: Amount
    discount_amount: Amount
    final_total: Amount
    free_shipping: bool


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format_amount(value) if value == value.quantize(Decimal("0.01")) else str(value)
    return value


class EventPublic(BaseModel):
    version: int
    type: str
    occurred_at: datetime
    data: dict[str, Any]

    @classmethod
    def from_event(cls, event: RecordedEvent) -> EventPublic:
        return cls(
            version=event.version,
            type=event.type,
            occurred_at=event.occurred_at,
            data={k: _jsonable(v) for k, v in event.data.items()},
        )


class EventPage(BaseModel):
    data: list[EventPublic]
    next_cursor: str | None


class ProductCreate(Request):
    name: str = Field(min_length=1, max_length=200)
    price: Amount
    stock: int = Field(ge=0, le=2_000_000_000, strict=True)


class ProductPublic(BaseModel):
    id: int
    name: str
    price: Amount
    stock: int


class CheckoutItem(Request):
    product_id: int = Field(ge=1, strict=True)
    quantity: int = Field(ge=1, le=10_000, strict=True)


class CheckoutRequest(Request):
    user_id: int = Field(ge=1, strict=True)
    items: list[CheckoutItem] = Field(min_length=1, max_length=100)
    coupon_code: str | None = Field(default=None, min_length=1, max_length=100)


class OrderPublic(BaseModel):
    id: int
    user_id: int
    subtotal: Amount
    total: Amount
    created_at: datetime


class OrderWithCouponPublic(OrderPublic):
    discount_amount: Amount
    coupon_code: str
    redemption_id: UUID
