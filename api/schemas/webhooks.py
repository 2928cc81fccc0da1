"""Webhook endpoints and their deliveries."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from api.schemas.common import Request, UtcTimestamp, text
from projections.webhooks.events import EVENT_KINDS
from projections.webhooks.store import DeliveryRow, EndpointRow

EventKind = Literal[
    "coupon.exhausted",
    "campaign.budget_exhausted",
    "redemption.created",
    "redemption.reversed",
    "hold.expired",
    "coupon.created",
    "coupon.deactivated",
]
assert set(EventKind.__args__) == set(EVENT_KINDS)  # type: ignore[attr-defined]
DeliveryStatus = Literal["pending", "succeeded", "failed"]


# An http(s) URL with a host name or IPv4 address, an optional port (1-65535) and any printable
# ASCII after it: exactly what the documented pattern admits, so that the document and the check agree.
PORT = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
URL_PATTERN = f"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9]([A-Za-z0-9.-]{{0,251}}[A-Za-z0-9])?(:{PORT})?([/?#][!-~]*)?$"
URL_SCHEMA = {
    "type": "string",
    "maxLength": 2048,
    "pattern": URL_PATTERN,
    "description": "Where to POST the events: an http or https URL.",
    "examples": ["https://shop.example.com/hooks/coupons"],
}
_URL = re.compile(URL_PATTERN)


def _check_url(value: str) -> str:
    """As a JSON Schema validator reads the pattern (``$`` also matches before a final newline,
    which is then dropped)."""
    if not _URL.match(value):
        raise ValueError("must be an http or https URL with a host (a name or an IPv4 address)")
    return value.removesuffix("\n")


WebhookUrl = Annotated[str, Field(max_length=2048), AfterValidator(_check_url), WithJsonSchema(URL_SCHEMA)]


def _no_duplicates(kinds: list[str]) -> list[str]:
    if len(set(kinds)) != len(kinds):
        raise ValueError("must not name a kind twice")
    return kinds


class EndpointCreate(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://shop.example.com/hooks/coupons",
                    "events": ["coupon.exhausted", "redemption.created"],
                    "description": "stock and CRM",
                }
            ]
        },
    )

    url: WebhookUrl
    events: Annotated[
        list[EventKind],
        Field(
            min_length=1,
            max_length=len(EVENT_KINDS),
            description="The kinds of event to send, each once.",
            json_schema_extra={"uniqueItems": True},
        ),
        AfterValidator(_no_duplicates),
    ]
    description: text(1, 500, "stock and CRM") | None = None  # type: ignore[valid-type]


class EndpointPublic(BaseModel):
    id: UUID
    url: str
    events: list[str]
    description: str | None
    created_at: UtcTimestamp
    disabled_at: UtcTimestamp | None = Field(description="When it was deleted (no delivery since); null while live.")

    @classmethod
    def from_row(cls, row: EndpointRow) -> EndpointPublic:
        return cls(
            id=row.id,
            url=row.url,
            events=row.events,
            description=row.description,
            created_at=row.created_at,
            disabled_at=row.disabled_at,
        )


class EndpointCreated(EndpointPublic):
    secret: str = Field(
        description="whsec_…: the key of every delivery's Coupon-Ledger-Signature. Shown only here: keep it."
    )

    @classmethod
    def from_new(cls, row: EndpointRow) -> EndpointCreated:
        return cls(**EndpointPublic.from_row(row).model_dump(), secret=row.secret)


class EndpointPage(BaseModel):
    data: list[EndpointPublic] = Field(description="The caller's endpoints (deleted ones too), oldest first.")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


class DeliveryPublic(BaseModel):
    id: UUID
    endpoint_id: UUID
    event_id: str = Field(description="The webhook event's id (Coupon-Ledger-Event-Id): the same on every attempt.")
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: UtcTimestamp | None
    created_at: UtcTimestamp
    delivered_at: UtcTimestamp | None

    @classmethod
    def from_row(cls, row: DeliveryRow) -> DeliveryPublic:
        return cls(
            id=row.id,
            endpoint_id=row.endpoint_id,
            event_id=row.event_id,
            event_type=row.event_type,
            status=row.status,  # type: ignore[arg-type]
            attempts=row.attempts,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            next_attempt_at=row.next_attempt_at,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
        )


class DeliveryPage(BaseModel):
    data: list[DeliveryPublic] = Field(description="The caller's deliveries, in the order of their events in the log.")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")
