"""The storefront's public routes: verify a code against a cart, list public coupons."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from api.schemas.common import (
    PATH_CODE_PATTERN,
    Amount,
    Code,
    CustomerId,
    DiscountType,
    Request,
    UtcTimestamp,
    not_null,
)
from api.schemas.coupons import shown_discount_value
from api.schemas.redemptions import ItemIn
from ledger.domain import (
    Item,
    Quote,
)
from projections.coupons import CouponRow

STOREFRONT_VERIFY_EXAMPLES: list[dict[str, Any]] = [
    {"code": "BIENVENIDO20", "cart_subtotal": "150.00"},
    {
        "code": "LAMPS15",
        "items": [{"product_id": "lamp-1", "category_id": "lighting", "quantity": 2, "unit_price": "120.00"}],
        "customer_id": "cust-7",
        "shipping_amount": "4.90",
    },
]


def _storefront_verify_schema(schema: dict[str, Any]) -> None:
    not_null(schema, "cart_subtotal", "items")
    schema["anyOf"] = [
        {"title": "With a cart_subtotal", "required": ["cart_subtotal"]},
        {"title": "With items", "required": ["items"]},
    ]
    schema["description"] = (
        "Seed 004's verify: a code against a cart. The retailer is the key's (no tenant_id). Send "
        "cart_subtotal, items or both (with both, cart_subtotal must be the items' sum)."
    )
    schema["examples"] = STOREFRONT_VERIFY_EXAMPLES


class StorefrontVerifyRequest(Request):
    """POST /v1/storefront/coupons/verify."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_storefront_verify_schema)

    code: Code
    cart_subtotal: Amount | None = Field(
        default=None,
        description=(
            "The cart's subtotal (the seed's field); with items it may be left out (it is their sum, and "
            "a different value is SUBTOTAL_MISMATCH)."
        ),
    )
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="The cart's lines: a coupon scoped to some products or categories needs them."
    )
    customer_id: CustomerId | None = Field(
        default=None, description="A stable id of the shopper: required by a coupon with a per-customer limit."
    )
    shipping_amount: Amount | None = Field(
        default=None, description="What shipping costs: a free_shipping coupon's discount (0 when absent)."
    )
    tenant_id: SkipJsonSchema[Any] = None

    @field_validator("tenant_id")
    @classmethod
    def _no_tenant(cls, value: Any) -> Any:
        raise ValueError("is not taken here: the API key names the retailer (leave tenant_id out)")

    def order_items(self) -> list[Item] | None:
        return [line.as_item() for line in self.items] if self.items is not None else None


class StorefrontVerification(BaseModel):
    """A valid coupon's discount on the cart: the seed's fields (valid, discount_amount,
    coupon_type), then the totals."""

    valid: Literal[True] = True
    discount_amount: Amount
    coupon_type: DiscountType
    code: str = Field(description="The coupon's code as stored (trimmed, upper-cased).")
    original_subtotal: Amount
    final_total: Amount = Field(description="original_subtotal - discount_amount.")
    free_shipping: bool = Field(description="True for a free_shipping coupon: its discount is the shipping_amount.")

    @classmethod
    def of(cls, quote: Quote, coupon_type: str) -> StorefrontVerification:
        return cls(
            discount_amount=quote.discount_amount,
            coupon_type=coupon_type,  # type: ignore[arg-type]
            code=quote.code,
            original_subtotal=quote.original_subtotal,
            final_total=quote.final_total,
            free_shipping=quote.free_shipping,
        )


class StorefrontCoupon(BaseModel):
    """What a shopper may see of a public coupon: its terms, never its counts, limits or campaign."""

    code: str = Field(pattern=PATH_CODE_PATTERN, examples=["SAVE10"])
    discount_type: DiscountType
    discount_value: Amount | None = Field(description="Null for free_shipping (its discount is the shipping).")
    min_order_value: Amount | None
    max_discount_amount: Amount | None
    starts_at: UtcTimestamp | None
    expires_at: UtcTimestamp | None

    @classmethod
    def from_row(cls, row: CouponRow) -> StorefrontCoupon:
        return cls(
            code=row.code,
            discount_type=row.discount_type,  # type: ignore[arg-type]
            discount_value=shown_discount_value(row.discount_type, row.discount_value),
            min_order_value=row.min_order_value,
            max_discount_amount=row.max_discount_amount,
            starts_at=row.starts_at,
            expires_at=row.expiry_date,
        )


class StorefrontCouponPage(BaseModel):
    data: list[StorefrontCoupon]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")
