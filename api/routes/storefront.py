"""/v1/storefront: seed 004's public routes, for a shop's pages. They take a publishable key
(`pk_…`, safe to ship in a web page; it names the retailer, where the seed took a tenant_id) or
a secret one.

- POST /v1/storefront/coupons/verify: a code against a cart, a dry run of the ledger's validate
  (consumes nothing). What it answers is what a shopper may see: a refusal names the rule, never
  the coupon's counts, limits or campaign.
- GET /v1/storefront/coupons: the retailer's coupons that are active now and public, shopper-safe
  fields only, paged; cacheable (Cache-Control, a strong ETag, 304 on If-None-Match).
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api import throttle
from api.deps import Caller, StorefrontCallerDep
from api.errors import ApiError
from api.openapi import REFUSED, errors
from api.pagination import Cursor, decode_code_cursor, encode_cursor
from api.read_model import read_model
from api.schemas import (
    StorefrontCoupon,
    StorefrontCouponPage,
    StorefrontVerification,
    StorefrontVerifyRequest,
)
from api.shopper import shopper_safe
from ledger.errors import LedgerError

router = APIRouter(prefix="/v1/storefront", tags=["storefront"])

# A shared cache (a CDN in front of the shop) may keep the list this long, per key (Vary:
# Authorization). Short: a coupon deactivated, archived or used up leaves shoppers' pages within a
# minute, and a listed coupon that has just stopped being valid costs the shopper one refused
# verify, nothing more (verify and checkout always decide on the ledger's current state). Long
# enough that a busy shop's pages cost about one request a minute per edge; after that a
# revalidation with If-None-Match is a 304 without a body.
MAX_AGE = 60
CACHE_CONTROL = f"public, max-age={MAX_AGE}"
VARY = "Authorization"
CACHE_HEADERS_DOC = {
    "ETag": {
        "description": "A strong validator of this body: send it back as If-None-Match.",
        "schema": {"type": "string"},
    },
    "Cache-Control": {"description": CACHE_CONTROL, "schema": {"type": "string"}},
    "Vary": {"description": "Authorization: each key has its own list.", "schema": {"type": "string"}},
}


def verify_cart(caller: Caller, body: StorefrontVerifyRequest) -> StorefrontVerification:
    if body.cart_subtotal is None and body.items is None:
        raise ApiError(
            "VALIDATION_FAILED",
            "The request is not valid.",
            errors=[{"field": "cart_subtotal", "message": "send cart_subtotal or items"}],
        )
    ledger = caller.services.ledger
    try:
        # The quote does not say the coupon's type: the coupon it was priced with does (one read).
        quote, coupon = ledger.validate_with_coupon(
            caller.retailer_id,
            body.code,
            body.cart_subtotal,
            items=body.order_items(),
            shipping_amount=body.shipping_amount,
            customer_id=body.customer_id,
        )
    except LedgerError as error:
        safe = shopper_safe(error, body.code)
        if safe is error:
            raise
        raise safe from None
    return StorefrontVerification.of(quote, coupon.discount_type)


@router.post(
    "/coupons/verify",
    responses=errors(
        {
            404: ["COUPON_NOT_FOUND"],
            422: [*REFUSED, "SUBTOTAL_MISMATCH"],
            429: ["RATE_LIMITED"],
            503: ["SERVICE_UNAVAILABLE"],
        }
    ),
)
async def verify_coupon(
    request: Request, body: StorefrontVerifyRequest, caller: StorefrontCallerDep
) -> StorefrontVerification:
    """Seed 004's verify: whether a code gives a discount on this cart, and how much; consumes
    nothing (a dry run of `POST /v1/coupons/validate`). A refused code is our error shape with the
    rule's code (`COUPON_NOT_FOUND`, `COUPON_EXPIRED`, `MIN_ORDER_NOT_MET`, ...), its details
    without the coupon's limits, counts or campaign. Takes a publishable or a secret key. Failed
    lookups are limited (429 RATE_LIMITED): with a publishable key, per client address as well as
    per customer_id, since a page can send any customer_id."""
    count_address = caller.kind == "publishable"
    async with throttle.guard(request, caller, customer_id=body.customer_id, count_address=count_address):
        return await run_in_threadpool(verify_cart, caller, body)


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 If-None-Match: ``*`` or a list of entity tags, compared weakly (W/ ignored)."""
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


CACHED_LIST_OPENAPI: dict[int | str, dict[str, Any]] = {
    200: {"description": "The coupons", "headers": CACHE_HEADERS_DOC},
    304: {
        "description": "Not modified: If-None-Match matched this list's ETag (no body).",
        "headers": CACHE_HEADERS_DOC,
    },
}


@router.get(
    "/coupons",
    response_model=StorefrontCouponPage,
    responses={**CACHED_LIST_OPENAPI, **errors({503: ["SERVICE_UNAVAILABLE"]})},
)
def list_storefront_coupons(
    caller: StorefrontCallerDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
    if_none_match: Annotated[
        str | None,
        Header(description="The ETag of a list fetched before (or *): 304 without a body if it has not changed."),
    ] = None,
) -> Response:
    """Seed 004's list: the retailer's coupons that are active now (not deactivated, started, not
    expired, uses left) and public, in code order, with the fields a shopper may see. Reflects
    every write acknowledged before the request. Cacheable: `Cache-Control: public, max-age=60`,
    `Vary: Authorization`, a strong `ETag`; `If-None-Match` with it (or `*`) is 304 without a body.
    Takes a publishable or a secret key."""
    services = caller.services
    after_code = decode_code_cursor(cursor) if cursor else None
    rows = read_model(
        services,
        "Coupons",
        lambda view: view.list_coupons(
            caller.retailer_id,
            now=services.ledger.clock(),
            status="active",
            after_code=after_code,
            limit=limit + 1,
            public_only=True,
        ),
    )
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].code) if len(rows) > limit else None
    content = StorefrontCouponPage(
        data=[StorefrontCoupon.from_row(r) for r in page], next_cursor=next_cursor
    ).model_dump_json()
    body = content.encode()
    etag = etag_of(body)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": VARY}
    if if_none_match is not None and etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
