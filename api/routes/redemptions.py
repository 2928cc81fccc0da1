"""/v1/redemptions: the redemption log (every use of the caller's coupons, from the read model),
one redemption, and giving a redemption's use back (the order was cancelled)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query

from api.deps import CallerDep
from api.errors import ApiError
from api.openapi import errors
from api.pagination import Cursor, decode_time_cursor, encode_time_cursor
from api.read_model import read_model
from api.schemas import CustomerId, NewCode, RedemptionPage, RedemptionRecord, ReversalPublic, ReverseRequest, Timestamp
from ledger.commands import Reverse
from ledger.domain import coupon_id_for
from projections.redemptions import RedemptionFilter, get_redemption, list_redemptions

router = APIRouter(prefix="/v1/redemptions", tags=["redemptions"])

RedemptionId = Annotated[
    str,
    Path(
        description=(
            "The redemption_id of an apply or a checkout. Anything else is REDEMPTION_NOT_FOUND, like a missing one."
        ),
        json_schema_extra={"format": "uuid", "examples": ["7d3a5c9e-1f2b-4c8d-9e0a-3b6f1d2c4e5a"]},
    ),
]


def not_found(redemption_id: str) -> ApiError:
    return ApiError("REDEMPTION_NOT_FOUND", f"Redemption {redemption_id} does not exist.", redemption_id=redemption_id)


@router.get("", responses=errors({503: ["SERVICE_UNAVAILABLE"]}))
def list_redemptions_route(
    caller: CallerDep,
    code: Annotated[NewCode | None, Query(description="Only the uses of this code (any case).")] = None,
    campaign_id: Annotated[UUID | None, Query(description="Only the uses of this campaign's codes.")] = None,
    customer_id: Annotated[CustomerId | None, Query(description="Only this customer's uses.")] = None,
    occurred_from: Annotated[
        Timestamp | None, Query(alias="from", description="Only uses made at or after this time.")
    ] = None,
    occurred_to: Annotated[
        Timestamp | None, Query(alias="to", description="Only uses made at or before this time.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> RedemptionPage:
    """Every use of the caller's coupons (apply, the confirm of a hold, checkout), oldest first,
    with its reversal (reversed_at) if it was given back; a page at a time (pass next_cursor as
    cursor, with the same filters). Reflects every use acknowledged before the request."""
    services = caller.services
    after = decode_time_cursor(cursor) if cursor else None
    where = RedemptionFilter(
        coupon_id=coupon_id_for(caller.retailer_id, code) if code is not None else None,
        campaign_id=campaign_id,
        customer_id=customer_id,
        occurred_from=occurred_from,
        occurred_to=occurred_to,
    )
    rows = read_model(
        services,
        "Redemptions",
        lambda view: list_redemptions(view.datastore, caller.retailer_id, where, after, limit + 1),
    )
    page = rows[:limit]
    next_cursor = encode_time_cursor(page[-1].occurred_at, page[-1].id) if len(rows) > limit else None
    return RedemptionPage(data=[RedemptionRecord.from_row(r) for r in page], next_cursor=next_cursor)


@router.get("/{redemption_id}", responses=errors({404: ["REDEMPTION_NOT_FOUND"], 503: ["SERVICE_UNAVAILABLE"]}))
def get_redemption_route(redemption_id: RedemptionId, caller: CallerDep) -> RedemptionRecord:
    """One use of the caller's coupons, as the redemption log holds it."""
    try:
        parsed = UUID(redemption_id)
    except ValueError:
        raise not_found(redemption_id) from None
    services = caller.services
    row = read_model(services, "Redemptions", lambda view: get_redemption(view.datastore, caller.retailer_id, parsed))
    if row is None:
        raise not_found(redemption_id)
    return RedemptionRecord.from_row(row)


@router.post(
    "/{redemption_id}/reverse",
    responses=errors({404: ["REDEMPTION_NOT_FOUND"], 503: ["SERVICE_UNAVAILABLE"]}),
    openapi_extra={
        "requestBody": {
            "required": False,
            "description": "Optional: why the use is given back.",
            "content": {"application/json": {"example": {"reason": "order cancelled"}}},
        }
    },
)
async def reverse_redemption(
    redemption_id: RedemptionId, caller: CallerDep, body: ReverseRequest | None = None
) -> ReversalPublic:
    """Give the use back to its coupon, its customer and its campaign, as RedemptionReversed.
    Idempotent: reversing it again changes nothing and answers the first reversal again, with
    already_reversed true."""
    try:
        parsed = UUID(redemption_id)
    except ValueError:
        raise not_found(redemption_id) from None
    reason = body.reason if body is not None else None
    reversal = await caller.services.ledger.execute_async(Reverse(caller.retailer_id, parsed, reason))
    return ReversalPublic.from_reversal(reversal)
