"""Daily figures of a retailer's redemptions (GET /v1/analytics/daily)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from importlib.resources import files
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from ledger.money import format_amount
from projections.analytics import DailyFigures

SignedAmount = Annotated[
    Decimal,
    PlainSerializer(format_amount, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": "^-?\\d+\\.\\d{2}$", "examples": ["120.00"]}),
]
"""A total that reversals may take below zero (a day that gave back more than it took)."""

# The IANA zones, as the pinned tzdata package lists them (the names PostgreSQL knows as well).
TIME_ZONES: tuple[str, ...] = tuple(sorted(files("tzdata").joinpath("zones").read_text().split()))
TIME_ZONE_SCHEMA = {
    "type": "string",
    "enum": list(TIME_ZONES),
    "default": "UTC",
    "description": "The IANA time zone whose local days are counted (default UTC).",
    "examples": ["Asia/Kolkata"],
}

DAILY_CSV_COLUMNS = ("day", "code", "campaign_id", "redemptions", "reversals", "discount_total", "revenue_total")


def left_out(group_by: str) -> set[str]:
    """The key columns a grouping does not show: the other grouping's, or both for the retailer."""
    return {"coupon": {"campaign_id"}, "campaign": {"code"}}.get(group_by, {"code", "campaign_id"})


class DailyRow(BaseModel):
    """One local day's figures for a coupon (``code``), a campaign (``campaign_id``) or the retailer."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "day": "2027-01-31",
                    "code": "SAVE10",
                    "redemptions": 12,
                    "reversals": 1,
                    "discount_total": "110.00",
                    "revenue_total": "990.00",
                }
            ]
        }
    )

    day: date = Field(description="The local date in the requested time zone.")
    code: str | None = Field(default=None, description="With group_by=coupon only.")
    campaign_id: UUID | None = Field(
        default=None, description="With group_by=campaign only; null for the codes of no campaign."
    )
    redemptions: int = Field(description="Uses made that day.")
    reversals: int = Field(description="Uses given back that day (whenever they were made).")
    discount_total: SignedAmount = Field(
        description="Discount of the day's uses, less that of the uses given back that day."
    )
    revenue_total: SignedAmount = Field(
        description="Final totals of the day's uses, less those of the uses given back that day."
    )

    @classmethod
    def of(cls, figures: DailyFigures, group_by: str) -> DailyRow:
        key: dict[str, Any] = {}
        if group_by == "coupon":
            key["code"] = figures.key
        elif group_by == "campaign":
            key["campaign_id"] = figures.key
        return cls(
            day=figures.day,
            redemptions=figures.redemptions,
            reversals=figures.reversals,
            discount_total=figures.discount_total,
            revenue_total=figures.revenue_total,
            **key,
        )

    def shown(self, group_by: str) -> dict[str, Any]:
        """The row as JSON: the grouping's own key only (none for the retailer)."""
        return self.model_dump(mode="json", exclude=left_out(group_by))


class DailyPage(BaseModel):
    data: list[DailyRow] = Field(
        description="One row per local day (and code or campaign), in day order; days with nothing are left out."
    )
