"""/v1/coupons: manage, validate and redeem coupons; the audit trail of one coupon (a JSON page, or
streamed whole as JSON lines or CSV: api/exports.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError

from api import throttle
from api.deps import CallerDep, get_caller
from api.errors import ApiError
from api.event_log_reads import read_event_log
from api.exports import EVENT_COLUMNS, STREAMED_CONTENT, event_object, streamed
from api.openapi import REFUSED, errors
from api.pagination import (
    Cursor,
    decode_code_cursor,
    decode_sorted_cursor,
    decode_version_cursor,
    encode_cursor,
    encode_sorted_cursor,
)
from api.read_model import read_model
from api.schemas import (
    MAX_BIGINT,
    PATH_CODE_PATTERN,
    VALID_IDEMPOTENCY_KEY,
    ActivateRequest,
    ApplyRequest,
    CouponCreate,
    CouponPage,
    CouponPatch,
    CouponPublic,
    EventPage,
    EventPublic,
    HoldPublic,
    IdempotencyKey,
    QuotePublic,
    RedemptionPublic,
    ReserveRequest,
    Status,
    Timestamp,
    TransitionRequest,
    ValidateRequest,
    redemption_json,
)
from ledger.commands import Activate, Archive, CreateCoupon, Deactivate, Redeem, Reserve, Transition, UpdateCoupon
from ledger.domain import UNSET, Order
from ledger.exports import coupon_event_pages
from ledger.timestamps import format_timestamp
from projections.coupon_rows import CouponOrder

router = APIRouter(prefix="/v1/coupons", tags=["coupons"])
M = TypeVar("M", bound=BaseModel)


CouponCode = Annotated[
    str,
    Path(
        description="The coupon's code, in any case. A code that cannot exist is COUPON_NOT_FOUND like a missing one.",
        json_schema_extra={"pattern": PATH_CODE_PATTERN, "examples": ["SAVE10"]},
    ),
]
# Every route that looks a code up: COUPON_NOT_FOUND, and 429 once the shopper has had too many
# of those (api/throttle.py).
NOT_FOUND = {404: ["COUPON_NOT_FOUND"], 429: ["RATE_LIMITED"]}
WRITE_BUSY = {503: ["SERVICE_UNAVAILABLE"]}
# What pricing an order may refuse: a coupon rule, or a subtotal that is not the items' sum.
PRICING_REFUSED = [*REFUSED, "SUBTOTAL_MISMATCH"]
COUPON_LINKS = {
    name: {"operationId": operation, "parameters": {"code": "$response.body#/code"}, "description": description}
    for name, operation, description in [
        ("GetCoupon", "get_coupon", "The coupon just created."),
        ("DeactivateCoupon", "deactivate_coupon", "Deactivate it."),
        ("ActivateCoupon", "activate_coupon", "Activate it."),
        ("UpdateCoupon", "update_coupon", "Change its terms."),
        ("TransitionCoupon", "transition_coupon", "Fire a state-machine event."),
        ("ArchiveCoupon", "archive_coupon", "Archive it."),
        ("CouponEvents", "coupon_events", "Its audit trail."),
    ]
} | {
    name: {
        "operationId": operation,
        "requestBody": {"code": "$response.body#/code", "subtotal": "100.00"},
        "description": description,
    }
    for name, operation, description in [
        ("ValidateCoupon", "validate_coupon", "Price an order of 100.00 with it."),
        ("ApplyCoupon", "apply_coupon", "Redeem it on an order of 100.00."),
    ]
}


@router.post(
    "",
    status_code=201,
    responses={
        201: {"description": "The coupon", "links": COUPON_LINKS},
        **errors({409: ["COUPON_CODE_TAKEN"], **WRITE_BUSY}),
    },
)
async def create_coupon(body: CouponCreate, caller: CallerDep) -> CouponPublic:
    ledger = caller.services.ledger
    coupon = await ledger.execute_async(CreateCoupon(caller.retailer_id, body.code, body.terms()))
    return CouponPublic.from_coupon(coupon, ledger.clock())


CouponSort = Literal["code", "-code", "created_at", "-created_at", "uses_count", "-uses_count"]


@router.get("", responses=errors({503: ["SERVICE_UNAVAILABLE"]}))
def list_coupons(
    caller: CallerDep,
    status: Status | None = None,
    campaign_id: Annotated[UUID | None, Query(description="Only the coupons of this campaign.")] = None,
    sort: Annotated[
        CouponSort,
        Query(description="The order: by code (the default), creation or uses; `-` for descending, code breaks ties."),
    ] = "code",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> CouponPage:
    services = caller.services
    key = sort.removeprefix("-")
    order = CouponOrder(key=key, descending=sort.startswith("-"))
    if cursor and key == "code":
        order = replace(order, after_code=decode_code_cursor(cursor))
    elif cursor:
        after_value, after_code = decode_sorted_cursor(cursor, key)
        order = replace(order, after_code=after_code, after_value=after_value)
    rows = read_model(
        services,
        "Coupons",
        lambda view: view.list_coupons(
            caller.retailer_id,
            now=services.ledger.clock(),
            status=status,
            after_code=None,
            limit=limit + 1,
            campaign_id=campaign_id,
            order=order,
        ),
    )
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor(last.code) if key == "code" else encode_sorted_cursor(getattr(last, key), last.code)
    return CouponPage(data=[CouponPublic.from_row(r) for r in page], next_cursor=next_cursor)


@router.post("/validate", responses=errors({**NOT_FOUND, 422: PRICING_REFUSED}))
def validate_coupon(body: ValidateRequest, caller: CallerDep, request: Request) -> QuotePublic:
    with throttle.guard(request, caller, customer_id=body.customer_id):
        quote = caller.services.ledger.validate(
            caller.retailer_id,
            body.code,
            body.subtotal,
            items=body.order_items(),
            shipping_amount=body.shipping_amount,
            customer_id=body.customer_id,
        )
    return QuotePublic.from_quote(quote)


IDEMPOTENCY_KEY = TypeAdapter[str](IdempotencyKey)
APPLY_RESPONSE_HEADERS = {
    "Idempotent-Replayed": {
        "description": "`true` when this is the first response to the same key and body, again.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
APPLY_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": IDEMPOTENCY_KEY.json_schema(),
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/ApplyRequest"},  # added by api.openapi
            }
        },
    },
}


@router.post(
    "/apply",
    status_code=201,
    response_model=None,
    responses={
        201: {
            "model": RedemptionPublic,
            "description": "The redemption (replayed: header Idempotent-Replayed)",
            "links": {
                "ReverseRedemption": {
                    "operationId": "reverse_redemption",
                    "parameters": {"redemption_id": "$response.body#/redemption_id"},
                    "description": "Give the use back.",
                }
            },
            "headers": APPLY_RESPONSE_HEADERS,
        },
        **errors({**NOT_FOUND, 409: ["IDEMPOTENCY_KEY_REUSED"], 422: PRICING_REFUSED, **WRITE_BUSY}),
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
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None and not VALID_IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        validated_header(IDEMPOTENCY_KEY, "Idempotency-Key", idempotency_key)  # raises, naming what is wrong
    async with throttle.guard(request, caller, customer_id=body.customer_id):
        receipt = await caller.services.ledger.execute_async(
            Redeem(
                caller.retailer_id,
                body.code,
                Order.of(body.subtotal, body.order_items(), body.shipping_amount),
                idempotency_key=idempotency_key,
                order_id=body.order_id,
                customer_id=body.customer_id,
            )
        )
    headers = {"Idempotent-Replayed": "true"} if receipt.replayed else None
    content = redemption_json(receipt.redemption_id, receipt.quote)  # RedemptionPublic's JSON
    return Response(content, status_code=201, media_type="application/json", headers=headers)


@router.post(
    "/reserve",
    status_code=201,
    response_model=None,
    responses={
        201: {
            "model": HoldPublic,
            "description": "The hold (replayed: header Idempotent-Replayed)",
            "links": {
                name: {
                    "operationId": operation,
                    "parameters": {"reservation_id": "$response.body#/reservation_id"},
                    "description": description,
                }
                for name, operation, description in [
                    ("ConfirmReservation", "confirm_reservation", "Turn the hold into a redemption."),
                    ("ReleaseReservation", "release_reservation", "Give the held use back."),
                    ("GetReservation", "get_reservation", "The hold's state."),
                ]
            },
            "headers": APPLY_RESPONSE_HEADERS,
        },
        **errors({**NOT_FOUND, 409: ["IDEMPOTENCY_KEY_REUSED"], 422: PRICING_REFUSED, **WRITE_BUSY}),
    },
)
async def reserve_coupon(
    body: ReserveRequest,
    caller: CallerDep,
    request: Request,
    idempotency_key: Annotated[IdempotencyKey | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Hold one use of the coupon for ttl_seconds while the shopper pays: checked exactly like
    apply, and counted against max_uses, the per-customer limit and the campaign's budget until it
    is confirmed, released, or its TTL passes (then it stops counting at once)."""
    async with throttle.guard(request, caller, customer_id=body.customer_id):
        hold = await caller.services.ledger.execute_async(
            Reserve(
                caller.retailer_id,
                body.code,
                Order.of(body.subtotal, body.order_items(), body.shipping_amount),
                idempotency_key=idempotency_key,
                order_id=body.order_id,
                customer_id=body.customer_id,
                ttl_seconds=body.ttl_seconds,
            )
        )
    headers = {"Idempotent-Replayed": "true"} if hold.replayed else None
    content = HoldPublic.from_hold(hold).model_dump_json().encode()
    return Response(content, status_code=201, media_type="application/json", headers=headers)


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


@router.get("/{code}", responses=errors(NOT_FOUND))
def get_coupon(code: CouponCode, caller: CallerDep, request: Request) -> CouponPublic:
    ledger = caller.services.ledger
    with throttle.guard(request, caller):
        coupon = ledger.get_coupon(caller.retailer_id, code)
    return CouponPublic.from_coupon(coupon, ledger.clock())


@router.post("/{code}/deactivate", responses=errors({**NOT_FOUND, **WRITE_BUSY}))
async def deactivate_coupon(code: CouponCode, caller: CallerDep, request: Request) -> CouponPublic:
    ledger = caller.services.ledger
    async with throttle.guard(request, caller):
        coupon = await ledger.execute_async(Deactivate(caller.retailer_id, code))
    return CouponPublic.from_coupon(coupon, ledger.clock())


@router.post(
    "/{code}/activate",
    responses=errors({**NOT_FOUND, **WRITE_BUSY}),
    openapi_extra={
        "requestBody": {
            "required": False,
            "description": "Optional: a new expiry (null: none), the platform's extend-expiry-and-activate.",
            "content": {"application/json": {"example": {"expires_at": "2027-06-30T23:59:59Z"}}},
        }
    },
)
async def activate_coupon(
    code: CouponCode, caller: CallerDep, request: Request, body: ActivateRequest | None = None
) -> CouponPublic:
    ledger = caller.services.ledger
    expires_at = body.new_expiry() if body is not None else UNSET
    async with throttle.guard(request, caller):
        coupon = await ledger.execute_async(Activate(caller.retailer_id, code, expires_at))
    return CouponPublic.from_coupon(coupon, ledger.clock())


@router.patch("/{code}", responses=errors({**NOT_FOUND, 422: ["FIELD_IMMUTABLE"], **WRITE_BUSY}))
async def update_coupon(code: CouponCode, body: CouponPatch, caller: CallerDep, request: Request) -> CouponPublic:
    """Change the mutable terms: only the fields sent; null removes one (public: false). An
    Updated event records what changed (none when nothing did)."""
    ledger = caller.services.ledger
    async with throttle.guard(request, caller):
        coupon = await ledger.execute_async(UpdateCoupon(caller.retailer_id, code, body.changes()))
    return CouponPublic.from_coupon(coupon, ledger.clock())


@router.delete(
    "/{code}",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "Archived"}, **errors({**NOT_FOUND, **WRITE_BUSY})},
)
async def archive_coupon(code: CouponCode, caller: CallerDep, request: Request) -> Response:
    """Archive: from now on the coupon is COUPON_NOT_FOUND everywhere but its events; its code stays taken."""
    async with throttle.guard(request, caller):
        await caller.services.ledger.execute_async(Archive(caller.retailer_id, code))
    return Response(status_code=204)


@router.post(
    "/{code}/transitions",
    responses=errors({**NOT_FOUND, 409: ["INVALID_TRANSITION"], **WRITE_BUSY}),
)
async def transition_coupon(
    code: CouponCode, body: TransitionRequest, caller: CallerDep, request: Request
) -> CouponPublic:
    """The platform's state machine: an event the diagram does not allow from the coupon's status
    is 409 INVALID_TRANSITION naming both (and the events it allows)."""
    ledger = caller.services.ledger
    async with throttle.guard(request, caller):
        coupon = await ledger.execute_async(Transition(caller.retailer_id, code, body.event, body.new_expiry()))
    return CouponPublic.from_coupon(coupon, ledger.clock())


@router.get(
    "/{code}/events",
    response_model=EventPage,
    responses={200: {"content": STREAMED_CONTENT}, **errors(NOT_FOUND)},
)
def coupon_events(
    code: CouponCode,
    caller: CallerDep,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500, description="Events per JSON page (not used by jsonl and csv).")] = 100,
    cursor: Cursor = None,
    export_format: Annotated[
        Literal["json", "jsonl", "csv"],
        Query(
            alias="format",
            description="json: a page of `limit` events. jsonl (application/x-ndjson) or csv (text/csv):"
            " the whole history (after `cursor`, if sent), streamed.",
        ),
    ] = "json",
) -> EventPage | Response:
    after = decode_version_cursor(cursor) if cursor else 0
    services = caller.services
    ledger = services.ledger
    retailer_id = caller.retailer_id
    if export_format != "json":
        with throttle.guard(request, caller):
            pages = read_event_log(
                services, lambda recorder: coupon_event_pages(ledger, retailer_id, code, after, recorder=recorder)
            )
        return streamed(pages, export_format, EVENT_COLUMNS, event_object)
    with throttle.guard(request, caller):
        events = read_event_log(
            services, lambda recorder: ledger.coupon_events(retailer_id, code, after, limit + 1, recorder)
        )
    page = events[:limit]
    next_cursor = encode_cursor(str(page[-1].version)) if len(events) > limit else None
    return EventPage(data=[EventPublic.from_event(e) for e in page], next_cursor=next_cursor)


STATE_HEADERS = {
    "Coupon-Version": {
        "description": "The version the state is after (the last event at or before `at`).",
        "schema": {"type": "integer"},
    },
    "Coupon-State-At": {
        "description": "The moment the status and live holds are judged at: `at`, or the time of event `version`.",
        "schema": {"type": "string", "format": "date-time"},
    },
    "Coupon-Archived": {
        "description": "`true` when the coupon had been archived by then (its history stays readable).",
        "schema": {"type": "string", "enum": ["true", "false"]},
    },
}


@router.get(
    "/{code}/state",
    responses={200: {"description": "The coupon as it was then", "headers": STATE_HEADERS}, **errors(NOT_FOUND)},
)
def coupon_state(
    code: CouponCode,
    caller: CallerDep,
    request: Request,
    response: Response,
    version: Annotated[
        int | None, Query(ge=1, le=MAX_BIGINT, description="The state after this event (1: the creation).")
    ] = None,
    at: Annotated[
        Timestamp | None,
        Query(
            description="The state at this moment: after the last event at or before it (RFC 3339; UTC if no offset)."
        ),
    ] = None,
) -> CouponPublic:
    """The coupon exactly as it was after its event `version`, or at the moment `at` (send exactly
    one), rebuilt from its events (from a snapshot and at most one snapshot interval of events),
    never from the read model. Its status and live holds are judged at that moment (for `version`:
    the time of that event). An archived coupon's history stays readable: the versions from its
    archiving on answer it with `Coupon-Archived: true`. `at` before the coupon existed is
    COUPON_NOT_FOUND; `at` later than now, or a version past the last, is 422."""
    if (version is None) == (at is None):
        message = "send exactly one of version and at"
        raise ApiError(
            "VALIDATION_FAILED",
            "Send exactly one of version and at.",
            errors=[{"field": "version", "message": message}, {"field": "at", "message": message}],
        )
    ledger = caller.services.ledger
    with throttle.guard(request, caller):
        if version is not None:
            then = ledger.coupon_after_version(caller.retailer_id, code, version)
        else:
            assert at is not None
            then = ledger.coupon_at(caller.retailer_id, code, at)
    response.headers["Coupon-Version"] = str(then.version)
    response.headers["Coupon-State-At"] = format_timestamp(then.at)
    response.headers["Coupon-Archived"] = "true" if then.archived else "false"
    return CouponPublic.from_coupon(then.coupon, then.at)
