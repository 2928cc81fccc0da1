"""/v1/audit: the retailer's whole log of events, for auditors (secret key only).

``GET /v1/audit/events`` answers every event of every stream the retailer owns, in log order,
each with its position, stream and code and its links in its stream's hash chain: streamed as JSON
lines (the default) or CSV for a whole export, or as a JSON page of ``limit`` events. ``after``
resumes from a position, in every format.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from api.deps import CallerDep
from api.event_log_reads import read_event_log
from api.exports import LOGGED_COLUMNS, STREAMED_CONTENT, logged_object, streamed
from api.openapi import errors
from api.schemas import MAX_BIGINT, LoggedEventPage, LoggedEventPublic
from ledger.exports import retailer_event_pages, retailer_events

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get(
    "/events",
    response_model=LoggedEventPage,
    responses={200: {"content": STREAMED_CONTENT}, **errors({503: ["SERVICE_UNAVAILABLE"]})},
)
def audit_events(
    caller: CallerDep,
    export_format: Annotated[
        Literal["jsonl", "csv", "json"],
        Query(
            alias="format",
            description="jsonl (application/x-ndjson, one event per line) or csv (text/csv): every event"
            " after `after`, streamed to the end of the log. json: a page of `limit` events, with `next_after`.",
        ),
    ] = "jsonl",
    after: Annotated[
        int,
        Query(ge=0, le=MAX_BIGINT, description="Only events after this position (the last `position` received)."),
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Events per JSON page (not used by jsonl and csv).")] = 100,
) -> LoggedEventPage | Response:
    """All the retailer's events (its coupons', redemptions', reservations', customers' uses' and
    campaigns') in the order they were recorded. Another retailer's never appear. Each stream's
    hash chain recomputes from the export alone (see `GET /v1/coupons/{code}/events`). Once a
    streamed export has begun, an error cannot change its status: the connection is cut (no final
    chunk); resume with `after` = the last complete line's `position`. With a read replica, served
    from it once it holds every event stored before the request."""
    services = caller.services
    ledger = services.ledger
    if export_format != "json":
        pages = read_event_log(
            services, lambda recorder: retailer_event_pages(ledger, caller.retailer_id, after, recorder=recorder)
        )
        return streamed(pages, export_format, LOGGED_COLUMNS, logged_object)
    events = read_event_log(
        services, lambda recorder: retailer_events(ledger, caller.retailer_id, after, limit + 1, recorder)
    )
    page = events[:limit]
    next_after = page[-1].position if len(events) > limit else None
    return LoggedEventPage(data=[LoggedEventPublic.from_logged(e) for e in page], next_after=next_after)
