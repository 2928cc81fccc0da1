"""/v1/products and /v1/checkout: the existing Cartly checkout, with an optional coupon; the caller's
products and orders only."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api import throttle
from api.deps import CallerDep
from api.openapi import errors
from api.schemas import (
    CheckoutRequest,
    OrderCreated,
    OrderPublic,
    OrderWithCouponPublic,
    ProductCreate,
    ProductPublic,
)

router = APIRouter(prefix="/v1", tags=["checkout"])


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
            "description": "The order; discount_amount, coupon_code and redemption_id only with a coupon_code",
        },
        **errors(
            {
                404: ["NOT_FOUND", "COUPON_NOT_FOUND"],
                409: ["OUT_OF_STOCK"],
                429: ["RATE_LIMITED"],
                422: [
                    "COUPON_INACTIVE",
                    "COUPON_NOT_STARTED",
                    "COUPON_EXPIRED",
                    "USAGE_LIMIT_REACHED",
                    "CUSTOMER_LIMIT_REACHED",
                    "CAMPAIGN_BUDGET_EXHAUSTED",
                    "MIN_ORDER_NOT_MET",
                    "COUPON_NOT_APPLICABLE",
                ],
                503: ["SERVICE_UNAVAILABLE"],
            }
        ),
    },
)
def checkout(body: CheckoutRequest, caller: CallerDep, request: Request) -> JSONResponse:
    # With a coupon, the code is looked up for the customer the order's user is to the ledger.
    guarded = (
        throttle.guard(request, caller, customer_id=str(body.user_id))
        if body.coupon_code is not None
        else contextlib.nullcontext()
    )
    with guarded:
        order = caller.services.checkout.place_order(
            caller.retailer_id, body.user_id, [(i.product_id, i.quantity) for i in body.items], body.coupon_code
        )
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
    return JSONResponse(public.model_dump(mode="json"), status_code=201)
