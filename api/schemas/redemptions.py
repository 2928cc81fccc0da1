"""Validating and redeeming a coupon on an order, giving a redemption back, and the redemption log."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from api.schemas.common import Amount, Code, CustomerId, Id, Int, Request, UtcTimestamp, not_null, text
from ledger.commands import Reversal
from ledger.domain import (
    Item,
    Quote,
)
from ledger.money import format_amount
from projections.redemptions import RedemptionRow


def _order_schema(examples: list[dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
    def finish(schema: dict[str, Any]) -> None:
        not_null(schema, "subtotal", "items")
        schema["anyOf"] = [
            {"title": "With a subtotal", "required": ["subtotal"]},
            {"title": "With items", "required": ["items"]},
        ]
        schema["properties"]["subtotal"]["description"] = (
            "The order's subtotal; with items it may be left out (it is their sum, and a different "
            "value is SUBTOTAL_MISMATCH). Send subtotal, items or both."
        )
        schema["examples"] = examples

    return finish


class ItemIn(Request):
    """A line of the order: quantity x unit_price of a product (its variant and category optional)."""

    product_id: Id
    variant_id: Id | None = None
    category_id: Id | None = None
    quantity: Int(1, 10_000, 2)  # type: ignore[valid-type]
    unit_price: Amount

    def as_item(self) -> Item:
        return Item(
            product_id=self.product_id,
            quantity=self.quantity,
            unit_price=self.unit_price,
            variant_id=self.variant_id,
            category_id=self.category_id,
        )


VALIDATE_EXAMPLES: list[dict[str, Any]] = [
    {"code": "SAVE10", "subtotal": "150.00"},
    {
        "code": "SAVE10",
        "items": [
            {"product_id": "sku-1", "category_id": "shoes", "quantity": 2, "unit_price": "40.00"},
            {"product_id": "sku-2", "variant_id": "sku-2-red", "quantity": 1, "unit_price": "70.00"},
        ],
        "shipping_amount": "4.90",
        "customer_id": "cust-42",
    },
]


class ValidateRequest(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_order_schema(VALIDATE_EXAMPLES))

    code: Code
    subtotal: Amount | None = None
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=100)] | None = None
    shipping_amount: Amount | None = Field(
        default=None, description="What shipping costs: a free_shipping coupon's discount (0 when absent)."
    )
    customer_id: CustomerId | None = Field(
        default=None, description="A stable id of the customer: required by a coupon with max_uses_per_customer."
    )

    def order_items(self) -> list[Item] | None:
        return [line.as_item() for line in self.items] if self.items is not None else None


class ApplyRequest(ValidateRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=_order_schema(
            [{**VALIDATE_EXAMPLES[0], "order_id": "1001"}, {**VALIDATE_EXAMPLES[1], "order_id": "1002"}]
        ),
    )

    order_id: text(1, 100, "1001") | None = None  # type: ignore[valid-type]


class ReverseRequest(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "order cancelled"}]})

    reason: text(1, 500, "order cancelled") | None = None  # type: ignore[valid-type]


class ReversalPublic(BaseModel):
    redemption_id: UUID
    code: str
    discount_amount: Amount
    reversed: Literal[True] = True
    reversed_at: UtcTimestamp
    reason: str | None
    already_reversed: bool = Field(description="True when an earlier request reversed it (its time and reason).")

    @classmethod
    def from_reversal(cls, reversal: Reversal) -> ReversalPublic:
        redemption = reversal.redemption
        assert redemption.reversed_at is not None
        return cls(
            redemption_id=redemption.id,
            code=redemption.code,
            discount_amount=redemption.discount_amount,
            reversed_at=redemption.reversed_at,
            reason=redemption.reversal_reason,
            already_reversed=reversal.already_reversed,
        )


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


class ConfirmedPublic(RedemptionPublic):
    reservation_id: UUID


def redemption_json(redemption_id: UUID, quote: Quote) -> bytes:
    """``RedemptionPublic(...).model_dump_json()``, byte for byte, without building the model: the
    busiest response, written from values the ledger made (a test holds the two equal)."""
    return (
        f'{{"redemption_id":"{redemption_id}","code":{json.dumps(quote.code)},'
        f'"original_subtotal":"{format_amount(quote.original_subtotal)}",'
        f'"discount_amount":"{format_amount(quote.discount_amount)}",'
        f'"final_total":"{format_amount(quote.final_total)}",'
        f'"free_shipping":{"true" if quote.free_shipping else "false"}}}'
    ).encode()


class RedemptionRecord(BaseModel):
    """A use of a coupon as the redemption log holds it (GET /v1/redemptions)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "redemption_id": "7d3a5c9e-1f2b-4c8d-9e0a-3b6f1d2c4e5a",
                    "code": "SAVE10",
                    "campaign_id": None,
                    "customer_id": "cust-42",
                    "order_id": "order-1001",
                    "occurred_at": "2027-01-31T23:50:00Z",
                    "original_subtotal": "100.00",
                    "discount_amount": "10.00",
                    "final_total": "90.00",
                    "reversed_at": None,
                }
            ]
        }
    )

    redemption_id: UUID
    code: str
    campaign_id: UUID | None = Field(description="The campaign the code belongs to; null for a coupon of its own.")
    customer_id: str | None
    order_id: str | None
    occurred_at: UtcTimestamp
    original_subtotal: Amount
    discount_amount: Amount
    final_total: Amount
    reversed_at: UtcTimestamp | None = Field(description="When the use was given back; null while it stands.")

    @classmethod
    def from_row(cls, row: RedemptionRow) -> RedemptionRecord:
        return cls(
            redemption_id=row.id,
            code=row.code,
            campaign_id=row.campaign_id,
            customer_id=row.customer_id,
            order_id=row.order_id,
            occurred_at=row.occurred_at,
            original_subtotal=row.original_subtotal,
            discount_amount=row.discount_amount,
            final_total=row.final_total,
            reversed_at=row.reversed_at,
        )


class RedemptionPage(BaseModel):
    data: list[RedemptionRecord] = Field(description="The caller's redemptions, oldest first.")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")
