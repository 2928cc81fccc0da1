"""Campaigns: codes generated in bulk under one template and one budget."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from api.schemas.common import MAX_INT32, Amount, DiscountType, Int, PositiveAmount, Request, UtcTimestamp, text
from api.schemas.coupons import CouponTerms, ScopePublic, shown_discount_value
from ledger.campaigns import MAX_CAMPAIGN_CODES
from ledger.domain import (
    GENERATED_LENGTH,
    ZERO,
    Campaign,
    normalize_prefix,
)
from ledger.errors import InvalidCoupon
from ledger.handlers import COUPON_FIELDS

MAX_PREFIX_LENGTH = 50 - GENERATED_LENGTH
PREFIX_SCHEMA = {
    "type": "string",
    "maxLength": 100,
    "pattern": f"^[\\t\\n\\v\\f\\r ]*[A-Za-z0-9_-]{{0,{MAX_PREFIX_LENGTH}}}[\\t\\n\\v\\f\\r ]*$",
    "description": f"What every code of the campaign starts with: 0-{MAX_PREFIX_LENGTH} of A-Z 0-9 _ - (any case; "
    "upper-cased; surrounding spaces are ignored). Six random characters follow it.",
    "examples": ["SPRING-"],
}


def _check_prefix(value: str) -> str:
    try:
        return normalize_prefix(value)
    except InvalidCoupon as error:
        raise ValueError(error.message) from None


CampaignPrefix = Annotated[str, Field(max_length=100), AfterValidator(_check_prefix), WithJsonSchema(PREFIX_SCHEMA)]


class CampaignCreate(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Spring newsletter",
                    "prefix": "SPRING-",
                    "count": 500,
                    "coupon": {"discount_type": "percentage", "discount_value": "15", "max_uses": 1},
                    "max_redemptions": 200,
                    "max_discount_total": "2500.00",
                }
            ]
        },
    )

    name: text(1, 200, "Spring newsletter")  # type: ignore[valid-type]
    prefix: CampaignPrefix
    count: Int(1, MAX_CAMPAIGN_CODES, 500)  # type: ignore[valid-type]
    coupon: CouponTerms = Field(description="The terms every code of the campaign gets: a coupon without code.")
    max_redemptions: Int(1, MAX_INT32, 200) | None = Field(  # type: ignore[valid-type]
        default=None, description="Redemptions of all the campaign's codes together, at most."
    )
    max_discount_total: PositiveAmount | None = Field(
        default=None, description="Discount given by all the campaign's codes together, at most."
    )


def in_template(error: InvalidCoupon) -> InvalidCoupon:
    """The domain's refusal of a campaign, naming a field of the template as ``coupon.<field>``
    (the template's terms are checked together by the ledger, as a coupon's are)."""
    for item in error.details.get("errors", []):
        if item["field"] in COUPON_FIELDS:
            item["field"] = f"coupon.{item['field']}"
    return error


class CampaignTemplatePublic(BaseModel):
    """The terms every code of a campaign was created with (as each coupon shows them)."""

    discount_type: DiscountType
    discount_value: Amount | None = Field(description="Null for free_shipping (its discount is the shipping).")
    min_order_value: Amount | None
    max_discount_amount: Amount | None
    starts_at: UtcTimestamp | None
    expires_at: UtcTimestamp | None
    max_uses: int | None
    max_uses_per_customer: int | None
    scope: ScopePublic | None
    public: bool
    is_active: bool

    @classmethod
    def of(cls, template: Mapping[str, Any]) -> CampaignTemplatePublic:
        return cls(
            **{
                **template,
                "discount_value": shown_discount_value(template["discount_type"], template["discount_value"]),
                "scope": ScopePublic.of(template["scope"]),
            }
        )


class CampaignResults(BaseModel):
    """What the campaign's codes have done so far, read from the campaign itself (exact, current)."""

    redeemed: int = Field(description="Redemptions of the campaign's codes, less those reversed.")
    discount_given: Amount = Field(description="Discount given by the campaign's codes, less that given back.")
    budget_left: Amount | None = Field(
        description="max_discount_total less discount_given (never below 0; live holds are not taken off); "
        "null when the campaign has no max_discount_total."
    )

    @classmethod
    def of(cls, campaign: Campaign) -> CampaignResults:
        budget = campaign.max_discount_total
        return cls(
            redeemed=campaign.redemptions,
            discount_given=campaign.discount_total,
            budget_left=None if budget is None else max(budget - campaign.discount_total, ZERO),
        )


class CampaignPublic(BaseModel):
    id: UUID
    name: str
    prefix: str
    count: int = Field(description="The number of codes asked for.")
    generated: int = Field(description="The number of codes made (equal to count once the campaign is created).")
    coupon: CampaignTemplatePublic
    max_redemptions: int | None
    max_discount_total: Amount | None
    redemptions: int = Field(description="Redemptions of the campaign's codes, less those reversed.")
    discount_total: Amount = Field(description="Discount given by the campaign's codes, less that reversed.")
    created_at: UtcTimestamp
    results: CampaignResults

    @classmethod
    def from_campaign(cls, campaign: Campaign) -> CampaignPublic:
        return cls(
            id=campaign.id,
            name=campaign.name,
            prefix=campaign.prefix,
            count=campaign.count,
            generated=campaign.generated,
            coupon=CampaignTemplatePublic.of(campaign.template),
            max_redemptions=campaign.max_redemptions,
            max_discount_total=campaign.max_discount_total,
            redemptions=campaign.redemptions,
            discount_total=campaign.discount_total,
            created_at=campaign.created_on,
            results=CampaignResults.of(campaign),
        )


class CampaignPage(BaseModel):
    data: list[CampaignPublic] = Field(description="The caller's campaigns, newest first.")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")
