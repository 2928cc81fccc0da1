"""/v1/checkout/sessions: seed 004's checkout session (cart-summary, validate-coupon, remove-coupon,
hold-inventory). The order is placed from a session by POST /v1/checkout {session_id, user_id}.

Every call that changes a session takes an Idempotency-Key (api/idempotency.py). A session is
sealed (api/shop/shoppers.py): its creation answers a client_secret, which a publishable-key
caller sends as X-Client-Secret on every later call on it; without it (or with another) the
session is NOT_FOUND, exactly like a missing one. A secret key needs none."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api import throttle
from api.deps import StorefrontCallerDep
from api.idempotency import IDEMPOTENCY_CONFLICTS, REPLAYED_RESPONSE_HEADER, IdempotencyDep
from api.openapi import REFUSED, errors
from api.retailers import PUBLISHABLE
from api.schemas import (
    SESSION_ID_PATTERN,
    CheckoutSessionPublic,
    CheckoutSessionSynced,
    CouponRemovedPublic,
    HeldItemPublic,
    HoldInventoryRequest,
    InventoryHoldPublic,
    RefusalPublic,
    SessionCouponPublic,
    SessionCouponRequest,
    SessionLinePublic,
    SessionSync,
)
from api.shop.errors import session_not_found
from api.shop.records import Session
from api.shop.sessions import COUPON_REFUSALS, Synced
from api.shop.shoppers import Shopper
from api.shopper import shopper_safe
from api.throttle import client_address
from ledger.errors import LedgerError

router = APIRouter(prefix="/v1/checkout/sessions", tags=["checkout sessions"])

SESSION_ID = re.compile(SESSION_ID_PATTERN)
SessionIdPath = Annotated[
    str,
    Path(
        description="The session's id. An id that cannot exist is NOT_FOUND like a missing one.",
        json_schema_extra={"pattern": SESSION_ID_PATTERN, "maxLength": 100, "examples": ["cart-8f3a2c"]},
    ),
]
CHANGED = {"description": "The session", "headers": REPLAYED_RESPONSE_HEADER}
BUSY = {503: ["SERVICE_UNAVAILABLE"]}
CAPPED = {429: ["RATE_LIMITED"]}
ClientSecretHeader = Annotated[
    str | None,
    Header(
        alias="X-Client-Secret",
        max_length=200,
        description=(
            "The session's client_secret (answered when it was created). Required with a publishable key:"
            " without it, or with another, the session is NOT_FOUND. A secret key needs none."
        ),
    ),
]


def shopper(request: Request, caller: StorefrontCallerDep, client_secret: str | None) -> Shopper:
    """Who calls: a secret key (the retailer's server), or a publishable key with the client secret
    it sent and its client address (the throttle's: X-Forwarded-For only from trusted proxies)."""
    if caller.kind != PUBLISHABLE:
        return Shopper()
    peer = request.client.host if request.client is not None else None
    trusted = caller.services.settings.trusted_proxies
    address = client_address(peer, request.headers.getlist("x-forwarded-for"), trusted)
    return Shopper(publishable=True, client_secret=client_secret, address=address)


def checked(session_id: str) -> str:
    if not SESSION_ID.fullmatch(session_id):
        raise session_not_found(session_id)
    return session_id


def session_public(session: Session, now: datetime) -> dict[str, Any]:
    held = session.held
    coupon = session.coupon
    return {
        "session_id": session.id,
        "status": session.status(now),
        "items": [
            SessionLinePublic(
                product_id=line.product_id,
                name=line.name,
                quantity=line.quantity,
                unit_price=line.unit_price,
                line_total=line.total,
            )
            for line in session.lines
        ],
        "subtotal": session.subtotal,
        "coupon": SessionCouponPublic(**vars(coupon)) if coupon is not None else None,
        "discount_amount": session.discount_amount,
        "total": session.total,
        "inventory_hold": (
            InventoryHoldPublic(
                expires_at=held.expires_at,
                items=[HeldItemPublic(product_id=pid, quantity=quantity) for pid, quantity in held.items],
            )
            if held is not None
            else None
        ),
        "expires_at": session.expires_at,
        "order_id": session.order_id,
        "created_at": session.created_at,
        "updated_at": session.updated_at,
    }


def session_response(session: Session, now: datetime) -> JSONResponse:
    return JSONResponse(CheckoutSessionPublic(**session_public(session, now)).model_dump(mode="json"))


def synced_response(synced: Synced, now: datetime) -> JSONResponse:
    removed = None
    if synced.coupon_removed is not None:
        error = shopper_safe(synced.coupon_removed.error, synced.coupon_removed.code)
        removed = CouponRemovedPublic(
            code=synced.coupon_removed.code,
            reason=RefusalPublic(code=error.code, message=error.message, details=error.details),
        )
    public = CheckoutSessionSynced(
        **session_public(synced.session, now), coupon_removed=removed, client_secret=synced.client_secret
    )
    return JSONResponse(public.model_dump(mode="json"), status_code=201 if synced.created else 200)


@router.post(
    "",
    status_code=201,
    response_model=None,
    responses={
        201: {"model": CheckoutSessionSynced, "description": "A new session", "headers": REPLAYED_RESPONSE_HEADER},
        200: {
            "model": CheckoutSessionSynced,
            "description": "The session, re-synced: its stock holds released, its coupon priced again (or removed)",
            "headers": REPLAYED_RESPONSE_HEADER,
        },
        **errors(
            {404: ["NOT_FOUND"], 409: ["SESSION_COMPLETED", *IDEMPOTENCY_CONFLICTS], 422: ["SUBTOTAL_MISMATCH"], **BUSY}
        ),
    },
)
async def sync_session(
    body: SessionSync,
    caller: StorefrontCallerDep,
    idempotency: IdempotencyDep,
    request: Request,
    client_secret: ClientSecretHeader = None,
) -> Response:
    """Create (201) or re-sync (200) a cart, priced by the server from the store's products. A
    re-sync releases the session's stock holds and holds its coupon again at the new price; a
    coupon that no longer applies is removed, and `coupon_removed` says which and why. The 201
    carries the session's `client_secret` (only there); a publishable key re-syncs an existing
    session only with it (X-Client-Secret), else NOT_FOUND: an id taken by another is never
    taken over. Without `session_id`, the server chooses one."""
    sessions = caller.services.sessions
    items = [(item.product_id, item.quantity) for item in body.items]
    who = shopper(request, caller, client_secret)

    async def sync(claim: object) -> Response:
        synced = await sessions.sync(caller.retailer_id, body.session_id, items, body.subtotal, who)
        return synced_response(synced, sessions.now())

    return await idempotency.run(caller.retailer_id, sync)


@router.get("/{session_id}", responses=errors({404: ["NOT_FOUND"]}))
def get_session(
    session_id: SessionIdPath, caller: StorefrontCallerDep, request: Request, client_secret: ClientSecretHeader = None
) -> CheckoutSessionPublic:
    sessions = caller.services.sessions
    session = sessions.get(caller.retailer_id, checked(session_id), shopper(request, caller, client_secret))
    return CheckoutSessionPublic(**session_public(session, sessions.now()))


@router.post(
    "/{session_id}/coupon",
    response_model=None,
    responses={
        200: {"model": CheckoutSessionPublic, **CHANGED},
        **errors(
            {
                404: ["NOT_FOUND", "COUPON_NOT_FOUND"],
                409: ["SESSION_COMPLETED", *IDEMPOTENCY_CONFLICTS],
                422: [*REFUSED, "SESSION_EXPIRED"],
                **CAPPED,
                **BUSY,
            }
        ),
    },
)
async def apply_session_coupon(
    session_id: SessionIdPath,
    body: SessionCouponRequest,
    caller: StorefrontCallerDep,
    idempotency: IdempotencyDep,
    request: Request,
    client_secret: ClientSecretHeader = None,
) -> Response:
    """Validate a coupon against the session's cart and hold one use of it until the session
    expires (the session's previous coupon is released in the same step). A refused coupon
    changes nothing. With a publishable key, 429 RATE_LIMITED (Retry-After: until the first of
    them ends) once the shopper's address, or the customer_id sent, already holds a coupon or
    stock in COUPON_LEDGER_MAX_HOLDS_PER_SHOPPER other sessions."""
    sessions = caller.services.sessions
    checked(session_id)
    who = shopper(request, caller, client_secret)

    async def apply(claim: object) -> Response:
        try:
            # A failed code lookup counts against the shopper's budget (the address too with a
            # publishable key, whose customer_id is whatever the page sends).
            async with throttle.guard(
                request, caller, customer_id=body.customer_id, count_address=caller.kind == PUBLISHABLE
            ):
                session = await sessions.apply_coupon(caller.retailer_id, session_id, body.code, body.customer_id, who)
        except LedgerError as error:
            if error.code not in COUPON_REFUSALS:
                raise
            safe = shopper_safe(error, body.code)  # the coupon's refusal as a shopper may see it
            if safe is error:
                raise
            raise safe from None
        return session_response(session, sessions.now())

    return await idempotency.run(caller.retailer_id, apply)


@router.delete(
    "/{session_id}/coupon",
    response_model=None,
    responses={
        200: {"model": CheckoutSessionPublic, **CHANGED},
        **errors(
            {404: ["NOT_FOUND"], 409: ["SESSION_COMPLETED", *IDEMPOTENCY_CONFLICTS], 422: ["SESSION_EXPIRED"], **BUSY}
        ),
    },
)
async def remove_session_coupon(
    session_id: SessionIdPath,
    caller: StorefrontCallerDep,
    idempotency: IdempotencyDep,
    request: Request,
    client_secret: ClientSecretHeader = None,
) -> Response:
    """Release the session's coupon hold (the use is given back at once). Without a coupon,
    nothing changes: removing twice is harmless."""
    sessions = caller.services.sessions
    checked(session_id)
    who = shopper(request, caller, client_secret)

    async def remove(claim: object) -> Response:
        session = await sessions.remove_coupon(caller.retailer_id, session_id, who)
        return session_response(session, sessions.now())

    return await idempotency.run(caller.retailer_id, remove)


@router.post(
    "/{session_id}/hold-inventory",
    response_model=None,
    responses={
        200: {"model": CheckoutSessionPublic, **CHANGED},
        **errors(
            {
                404: ["NOT_FOUND"],
                409: ["OUT_OF_STOCK", "SESSION_COMPLETED", *IDEMPOTENCY_CONFLICTS],
                422: ["SESSION_EXPIRED"],
                **CAPPED,
                **BUSY,
            }
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": False,
            "description": "Optional: how long to hold the stock (default and at most: until the session expires).",
            "content": {"application/json": {"example": {"ttl_seconds": 600}}},
        }
    },
)
async def hold_inventory(
    session_id: SessionIdPath,
    caller: StorefrontCallerDep,
    idempotency: IdempotencyDep,
    request: Request,
    body: HoldInventoryRequest | None = None,
    client_secret: ClientSecretHeader = None,
) -> Response:
    """Hold stock for every item of the session, all or nothing, in place of its previous hold:
    409 OUT_OF_STOCK names every product short (requested, available = stock - live holds of
    other sessions). The hold ends at its TTL (default and at most: the session's expiry), when
    the cart is re-synced, or when the order is placed. With a publishable key, capped per
    shopper like a coupon hold (429 RATE_LIMITED)."""
    sessions = caller.services.sessions
    checked(session_id)
    ttl_seconds = body.ttl_seconds if body is not None else None
    who = shopper(request, caller, client_secret)

    async def hold(claim: object) -> Response:
        session = await run_in_threadpool(sessions.hold_inventory, caller.retailer_id, session_id, ttl_seconds, who)
        return session_response(session, sessions.now())

    return await idempotency.run(caller.retailer_id, hold)
