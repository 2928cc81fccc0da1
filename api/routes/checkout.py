"""/v1/products and /v1/checkout: the existing Cartly checkout, with an optional coupon; the caller's
products and orders only."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import CallerDep
from api.schemas import CheckoutRequest, OrderPublic, OrderWithCouponPublic, ProductCreate, ProductPublic

router = APIRouter(prefix="/v1", tags=["checkout"])


@router.get("/products")
def list_products(caller: CallerDep) -> list[ProductPublic]:
    return [ProductPublic(**vars(p)) for p in caller.services.checkout.list_products(caller.retailer_id)]


@router.post("/products", status_code=201)
def add_product(body: ProductCreate, caller: CallerDep) -> ProductPublic:
    product = caller.services.checkout.add_product(caller.retailer_id, body.name, body.price, body.stock)
    return ProductPublic(**vars(product))


@router.post(
    "/checkout",
    status_code=201,
    response_model=None,
    responses={201: {"model": OrderWithCouponPublic, "description": "The order; coupon fields only with a coupon"}},
)
def checkout(body: CheckoutRequest, caller: CallerDep) -> JSONResponse:
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
