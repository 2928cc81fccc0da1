"""Models of /v1/audit: the retailer's log of events, as a JSON page (its streamed forms are
api/exports.py's)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from api.schemas.coupons import HASH_FIELD
from ledger.exports import LoggedEvent


class LoggedEventPublic(BaseModel):
    """An event of the retailer's log: ``position`` (its place in the log: pass the last one seen
    as ``after`` to go on), ``stream`` (the aggregate's id: a coupon, redemption, reservation,
    customer's uses or campaign), ``code`` (the coupon the stream belongs to; null for a
    campaign's), then the event exactly as ``GET /v1/coupons/{code}/events`` serves it. Each
    stream's ``hash`` chain recomputes from these fields alone."""

    position: int = Field(ge=1)
    stream: UUID
    code: str | None
    version: int
    type: str
    occurred_at: str = Field(examples=["2027-01-31T23:59:59.123456Z"])
    data: dict[str, Any]
    prev_hash: str = HASH_FIELD
    hash: str = HASH_FIELD

    @classmethod
    def from_logged(cls, logged: LoggedEvent) -> LoggedEventPublic:
        event = logged.event
        return cls.model_construct(
            position=logged.position,
            stream=logged.stream,
            code=logged.code,
            version=event.version,
            type=event.type,
            occurred_at=event.occurred_at,
            data=event.data,
            prev_hash=event.prev_hash,
            hash=event.hash,
        )


class LoggedEventPage(BaseModel):
    data: list[LoggedEventPublic]
    next_after: int | None = Field(
        description="Pass as `after` for the next page; null when this page reached the end of the log."
    )
