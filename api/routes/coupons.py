"""/v1/coupons: manage, validate and redeem coupons; the audit trail of one coupon."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError

from api.deps import CallerDep, get_caller
from api.errors import ApiError
from api.schemas import (
    ApplyRequest,
    CouponCreate,
    CouponPage,
    CouponPublic,
    EventPage,
    EventPublic,
    QuotePublic,
    RedemptionPublic,
    Status,
    ValidateRequest,
)

router = APIRouter(prefix="/v1/coupons", tags=["coupons"])
M = TypeVar("M", bound=BaseModel)


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def bad_cursor() -> ApiError:
    return ApiError(
        "VALIDATION_FAILED",
        "The cursor is not valid.",
        errors=[{"field": "cursor", "message": "not a cursor returned by this endpoint"}],
    )


def decode_cursor(cursor: str) -> str:
    try:
        decoded = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_cursor() from None
    if not decoded:
        raise bad_cursor()
    return decoded


@router.post("", status_code=201)
async def create_coupon(body: CouponCreate, caller: CallerDep) -> CouponPublic:
    ledger = caller.services.ledger
    coupon = await ledger.create_coupon_async(caller.retailer_id, **body.model_dump())
    return CouponPublic.from_coupon(coupon, ledger.clock())


@router.get("")
def list_coupons(
    caller: CallerDep,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> CouponPage:
    services = caller.services
    head = services.ledger.recorder.max_notification_id()
    try:
        services.coupons_view.wait_until_processed(
            services.ledger.name, head, timeout=services.settings.read_wait_timeout
        )
    except TimeoutError:
        raise ApiError(
            "SERVICE_UNAVAILABLE", "The coupon list is catching up with recent writes; retry shortly.", retry_after=1
        ) from None
    rows = services.coupons_view.list_coupons(
        caller.retailer_id,
        now=services.ledger.clock(),
        status=status,
        after_code=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].code) if len(rows) > limit else None
    return CouponPage(data=[CouponPublic.from_row(r) for r in page], next_cursor=next_cursor)


@router.post("/validate")
def validate_coupon(body: ValidateRequest, caller: CallerDep) -> QuotePublic:
    return QuotePublic.from_quote(caller.services.ledger.validate(caller.retailer_id, body.code, body.subtotal))


IdempotencyKey = TypeAdapter(Annotated[str, StringConstraints(min_length=1, max_length=255)])
APPLY_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        }
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": ApplyRequest.model_json_schema()}}},
}


@router.post(
    "/apply",
    status_code=201,
    response_model=None,
    responses={
        201: {"model": RedemptionPublic, "description": "The redemption (replayed: header Idempotent-Replayed)"}
    },
    openapi_extra=APPLY_OPENAPI,
)
async def apply_coupon(request: Request) -> Response:
    # The busiest route reads its request itself: FastAPI's resolution of a body, a header and
    # dependencies, and its second validation of the response, cost more CPU than the redemption.
    # The checks are the same models' (errors go through the same handlers); the OpenAPI
    # document is given above.
    caller = await get_caller(request)
    body = parsed(ApplyRequest, await request.body())
    header = request.headers.get("idempotency-key")
    idempotency_key = validated_header(IdempotencyKey, "idempotency-key", header) if header is not None else None
    receipt = await caller.services.ledger.apply_async(
        caller.retailer_id, body.code, body.subtotal, idempotency_key=idempotency_key, order_id=body.order_id
    )
    quote = receipt.quote
    public = RedemptionPublic.model_construct(  # the ledger's values: nothing to validate again
        redemption_id=receipt.redemption_id,
        code=quote.code,
        original_subtotal=quote.original_subtotal,
        discount_amount=quote.discount_amount,
        final_total=quote.final_total,
        free_shipping=quote.free_shipping,
    )
    headers = {"Idempotent-Replayed": "true"} if receipt.replayed else None
    return Response(public.model_dump_json(), status_code=201, media_type="application/json", headers=headers)


def parsed(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in error.errors()]) from None


def validated_header(adapter: TypeAdapter[str], name: str, value: str) -> str:
    try:
        return adapter.validate_python(value)
    except ValidationError as error:
        raise RequestValidationError([{**e, "loc": ("header", name)} for e in error.errors()]) from None


@router.get("/{code}")
def get_coupon(code: str, caller: CallerDep) -> CouponPublic:
    ledger = caller.services.ledger
    return CouponPublic.from_coupon(ledger.get_coupon(caller.retailer_id, code), ledger.clock())


@router.post("/{code}/deactivate")
async def deactivate_coupon(code: str, caller: CallerDep) -> CouponPublic:
    ledger = caller.services.ledger
    return CouponPublic.from_coupon(await ledger.deactivate_async(caller.retailer_id, code), ledger.clock())


@router.post("/{code}/activate")
async def activate_coupon(code: str, caller: CallerDep) -> CouponPublic:
    ledger = caller.services.ledger
    return CouponPublic.from_coupon(await ledger.activate_async(caller.retailer_id, code), ledger.clock())


@router.get("/{code}/events")
def coupon_events(
    code: str,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> EventPage:
    after = 0
    if cursor:
        decoded = decode_cursor(cursor)
        if not (decoded.isascii() and decoded.isdigit()):
            raise bad_cursor()
        after = int(decoded)
    events = caller.services.ledger.coupon_events(caller.retailer_id, code, after_version=after, limit=limit + 1)
    page = events[:limit]
    next_cursor = encode_cursor(str(page[-1].version)) if len(events) > limit else None
    return EventPage(data=[EventPublic.from_event(e) for e in page], next_cursor=next_cursor)
