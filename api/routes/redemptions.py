"""/v1/redemptions: give a redemption's use back (the order was cancelled)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path

from api.deps import CallerDep
from api.errors import ApiError
from api.openapi import errors
from api.schemas import ReversalPublic, ReverseRequest
from ledger.commands import Reverse

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
