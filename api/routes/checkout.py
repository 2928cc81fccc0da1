"""/v1/products and /v1/checkout: the existing Cartly checkout, with an optional coupon, and the
order placed from a checkout session; the caller's products and orders only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from psycopg import Connection
from starlette.concurrency import run_in_threadpool

from api import throttle
from api.deps import CallerDep
from api.errors import ApiError
from api.idempotency import IDEMPOTENCY_CONFLICTS, REPLAYED_RESPONSE_HEADER, Claim, IdempotencyDep
from api.openapi import coupon_refusals, errors
from api.schemas import (
    CheckoutRequest,
    OrderCreated,
    OrderDetailPublic,
    OrderPublic,
    OrderWithCouponPublic,
    ProductCreate,
    ProductPublic,
)
from api.shop.orders import Order, Record

router = APIRouter(prefix="/v1", tags=["checkout"])
CREATED = 201


def order_body(order: Order) -> bytes:
    """The 201 body of a checkout: the seed's order, and the coupon's fields when it used one."""
    public = OrderPublic(
        id=order.id, user_id=order.user_id, subtotal=order.subtotal, total=order.total, created_at=order.created_at
    )
    if order.receipt is not None:
        public = OrderWithCouponPublic(
            **public.model_dump(),
            discount_amount=order.receipt.quote.discount_amount,
            coupon_code=order.receipt.quote.code,
            redemption_id=order.receipt.redemption_id,
        )
    return bytes(JSONResponse(public.model_dump(mode="json")).body)


def order_response(order: Order) -> Response:
    return Response(order_body(order), status_code=CREATED, media_type="application/json")


def recorder(claim: Claim | None) -> Record | None:
    """Store the order's 201 under the request's Idempotency-Key in the order's own transaction:
    a replay answers exactly the body of the order that committed."""
    if claim is None:
        return None

    def record(conn: Connection[Any], order: Order) -> None:
        claim.record(conn, CREATED, order_body(order))

    return record


@router.get("/products")
def list_products(caller: CallerDep) -> list[ProductPublic]:
    return [ProductPublic(**vars(p)) for p in caller.services.checkout.list_products(caller.retailer_id)]


PRODUCT_LINKS = {
    "CheckoutProduct": {
        "operationId": "checkout",
        "requestBody": {"user_id": 1, "items": [{"product_id": "$response.body#/id", "quantity": 1}]},
        "description": "Buy one of the product just added.",
    }
}


@router.post("/products", status_code=201, responses={201: {"description": "The product", "links": PRODUCT_LINKS}})
def add_product(body: ProductCreate, caller: CallerDep) -> ProductPublic:
    product = caller.services.checkout.add_product(caller.retailer_id, body.name, body.price, body.stock)
    return ProductPublic(**vars(product))


@router.post(
    "/checkout",
    status_code=201,
    response_model=None,
    responses={
        201: {
            "model": OrderCreated,
            "description": (
                "The order; discount_amount, coupon_code and redemption_id only with a coupon (a coupon_code, or the"
                " session's coupon). Replayed: header Idempotent-Replayed"
            ),
            "headers": REPLAYED_RESPONSE_HEADER,
        },
        **errors(
            {
                404: ["NOT_FOUND", "COUPON_NOT_FOUND"],
                409: ["OUT_OF_STOCK", "SESSION_COMPLETED", "INVALID_TRANSITION", *IDEMPOTENCY_CONFLICTS],
                429: ["RATE_LIMITED"],
                422: [
                    *coupon_refusals("CUSTOMER_ID_REQUIRED"),  # the user_id is the customer
                    "SESSION_EXPIRED",
                    "RESERVATION_EXPIRED",
                    "CUSTOMER_MISMATCH",
                ],
                503: ["SERVICE_UNAVAILABLE"],
            }
        ),
    },
)
async def checkout(body: CheckoutRequest, caller: CallerDep, idempotency: IdempotencyDep, request: Request) -> Response:
    """Place an order: from the cart sent (`items`, `coupon_code` optional), or from a checkout
    session (`session_id`: its items at its prices, its coupon hold confirmed, its stock holds
    turned into decrements, the session completed), all or nothing."""
    problems = body.form_errors()
    if problems:
        raise ApiError("VALIDATION_FAILED", "The request is not valid.", errors=problems)
    checkout = caller.services.checkout
    retailer_id, user_id = caller.retailer_id, body.user_id
    if body.session_id is not None:
        session_id = body.session_id

        async def place_session_order(claim: Claim | None) -> Response:
            order = await checkout.place_session_order(retailer_id, session_id, user_id, recorder(claim))
            return order_response(order)

        return await idempotency.run(retailer_id, place_session_order)
    items = [(i.product_id, i.quantity) for i in body.items or ()]
    coupon_code = body.coupon_code

    async def place(claim: Claim | None) -> Response:
        if coupon_code is None:
            order = await run_in_threadpool(checkout.place_order, retailer_id, user_id, items, None, recorder(claim))
            return order_response(order)
        # The code is looked up for the customer the order's user is to the ledger.
        async with throttle.guard(request, caller, customer_id=str(user_id)):
            order = await run_in_threadpool(
                checkout.place_order, retailer_id, user_id, items, coupon_code, recorder(claim)
            )
        return order_response(order)

    return await idempotency.run(retailer_id, place)


OrderId = Annotated[
    str,
    Path(
        description="The order's id. An id that cannot be an order's is NOT_FOUND like a missing one.",
        json_schema_extra={"examples": ["1042"]},
    ),
]


@router.get("/orders/{order_id}", responses=errors({404: ["NOT_FOUND"]}))
def get_order(order_id: OrderId, caller: CallerDep) -> OrderDetailPublic:
    """One of the caller's orders, from either checkout (a cart or a checkout session): its totals,
    its lines when stored (a session's), and its coupon and redemption when it used one."""
    return OrderDetailPublic.from_order(caller.services.checkout.get_order(caller.retailer_id, order_id))
