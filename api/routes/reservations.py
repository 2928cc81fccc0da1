"""/v1/reservations: a hold made by POST /v1/coupons/reserve, confirmed into a redemption or released."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Response
from fastapi.responses import JSONResponse

from api.deps import CallerDep
from api.errors import ApiError
from api.idempotency import IDEMPOTENCY_CONFLICTS, REPLAYED_RESPONSE_HEADER, IdempotencyDep
from api.openapi import errors
from api.schemas import ConfirmedPublic, ConfirmRequest, ReleasePublic, ReservationPublic
from ledger.commands import Confirm, Release

router = APIRouter(prefix="/v1/reservations", tags=["reservations"])

ReservationId = Annotated[
    str,
    Path(
        description="The reservation_id of a hold. Anything else is RESERVATION_NOT_FOUND, like a missing one.",
        json_schema_extra={"format": "uuid", "examples": ["0b8f7c3e-5d1a-4e2b-9c6f-7a8d9e0f1a2b"]},
    ),
]
WRITE_BUSY = {503: ["SERVICE_UNAVAILABLE"]}


def reservation_uuid(reservation_id: str) -> UUID:
    try:
        return UUID(reservation_id)
    except ValueError:
        raise ApiError(
            "RESERVATION_NOT_FOUND", f"Reservation {reservation_id} does not exist.", reservation_id=reservation_id
        ) from None


@router.get("/{reservation_id}", responses=errors({404: ["RESERVATION_NOT_FOUND"]}))
def get_reservation(reservation_id: ReservationId, caller: CallerDep) -> ReservationPublic:
    ledger = caller.services.ledger
    reservation = ledger.get_reservation(caller.retailer_id, reservation_uuid(reservation_id))
    return ReservationPublic.from_reservation(reservation, ledger.clock())


@router.post(
    "/{reservation_id}/confirm",
    status_code=201,
    response_model=None,
    responses={
        201: {
            "model": ConfirmedPublic,
            "description": "The redemption the hold became (again: header Idempotent-Replayed)",
            "headers": {
                "Idempotent-Replayed": {
                    "description": "`true` when the hold was confirmed by an earlier request (or this is the"
                    " first response to the same Idempotency-Key and body, again).",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            },
        },
        **errors(
            {
                404: ["RESERVATION_NOT_FOUND", "COUPON_NOT_FOUND"],
                409: ["INVALID_TRANSITION", *IDEMPOTENCY_CONFLICTS],
                422: ["RESERVATION_EXPIRED"],
                **WRITE_BUSY,
            }
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": False,
            "description": "Optional: the order the use goes to.",
            "content": {"application/json": {"example": {"order_id": "1001"}}},
        }
    },
)
async def confirm_reservation(
    reservation_id: ReservationId, caller: CallerDep, idempotency: IdempotencyDep, body: ConfirmRequest | None = None
) -> Response:
    """Turn a live hold into a redemption, at the price it was held at (the coupon's rules were
    checked when it was held: a hold is honoured even if the coupon was deactivated since).
    Confirming again answers the same redemption. A hold past its TTL is RESERVATION_EXPIRED; a
    released one INVALID_TRANSITION."""
    order_id = body.order_id if body is not None else None
    parsed = reservation_uuid(reservation_id)

    async def confirm(claim: object) -> Response:
        receipt = await caller.services.ledger.execute_async(Confirm(caller.retailer_id, parsed, order_id))
        quote = receipt.quote
        public = ConfirmedPublic(
            redemption_id=receipt.redemption_id,
            reservation_id=parsed,
            code=quote.code,
            original_subtotal=quote.original_subtotal,
            discount_amount=quote.discount_amount,
            final_total=quote.final_total,
            free_shipping=quote.free_shipping,
        )
        headers = {"Idempotent-Replayed": "true"} if receipt.replayed else None
        return JSONResponse(public.model_dump(mode="json"), status_code=201, headers=headers)

    return await idempotency.run(caller.retailer_id, confirm)


@router.post(
    "/{reservation_id}/release",
    response_model=None,
    responses={
        200: {"model": ReleasePublic, "description": "The reservation, ended", "headers": REPLAYED_RESPONSE_HEADER},
        **errors({404: ["RESERVATION_NOT_FOUND"], 409: ["INVALID_TRANSITION", *IDEMPOTENCY_CONFLICTS], **WRITE_BUSY}),
    },
)
async def release_reservation(
    reservation_id: ReservationId, caller: CallerDep, idempotency: IdempotencyDep
) -> Response:
    """Give the held use back at once. Idempotent: releasing it again answers the same, with
    already_ended true. A hold past its TTL is answered (and recorded) as expired; a confirmed one
    is INVALID_TRANSITION (reverse its redemption instead)."""
    ledger = caller.services.ledger
    parsed = reservation_uuid(reservation_id)

    async def release(claim: object) -> Response:
        ended = await ledger.execute_async(Release(caller.retailer_id, parsed))
        public = ReservationPublic.from_reservation(ended.reservation, ledger.clock())
        released = ReleasePublic(**public.model_dump(), already_ended=ended.already)
        return JSONResponse(released.model_dump(mode="json"))

    return await idempotency.run(caller.retailer_id, release)
