"""Reading a placed order back: the order of either checkout (a cart sent to POST /v1/checkout, or
a checkout session), with its lines when they are stored (a session's, priced when it was
placed), and its coupon and redemption when it used one. The caller's orders only: another
retailer's order, a missing one and an id that cannot be an order's are all NOT_FOUND alike."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from api.shop.errors import ShopError
from api.shop.records import Line

MAX_ORDER_ID = 9_223_372_036_854_775_807  # orders.id is a bigserial
ORDER_ID = re.compile(r"[0-9]{1,19}")
READ_ORDER = (
    "SELECT o.id, o.user_id, o.subtotal, o.total, o.created_at,"
    " c.coupon_code, c.discount_amount, c.redemption_id, s.id AS session_id, s.items"
    " FROM orders o"
    " LEFT JOIN order_coupons c ON c.order_id = o.id AND c.retailer_id = o.retailer_id"
    " LEFT JOIN checkout_sessions s ON s.retailer_id = o.retailer_id AND s.order_id = o.id"
    " WHERE o.retailer_id = %s AND o.id = %s"
)


@dataclass(frozen=True)
class OrderCoupon:
    code: str
    discount_amount: Decimal
    redemption_id: UUID


@dataclass(frozen=True)
class PlacedOrder:
    """An order as stored. ``lines``: None when they are not stored (an order placed from a cart
    keeps only its totals, as the seed's orders table does); ``session_id``: the checkout session
    it was placed from, if any."""

    id: int
    user_id: int
    subtotal: Decimal
    total: Decimal
    created_at: datetime
    lines: tuple[Line, ...] | None
    session_id: str | None
    coupon: OrderCoupon | None


def order_not_found(order_id: str) -> ShopError:
    return ShopError("NOT_FOUND", f"Order {order_id} does not exist.", order_id=order_id)


def parse_order_id(order_id: str) -> int | None:
    """The id an order could have (a positive bigint written in digits), or None."""
    if not ORDER_ID.fullmatch(order_id):
        return None
    number = int(order_id)
    return number if 1 <= number <= MAX_ORDER_ID else None


def find_order(pool: ConnectionPool, retailer_id: UUID, order_id: str) -> PlacedOrder:
    """The retailer's order ``order_id`` (as sent); NOT_FOUND if there is none."""
    number = parse_order_id(order_id)
    if number is None:
        raise order_not_found(order_id)
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(READ_ORDER, (retailer_id, number))
        row = cur.fetchone()
    if row is None:
        raise order_not_found(order_id)
    return placed_order(row)


def placed_order(row: dict[str, Any]) -> PlacedOrder:
    coupon = None
    if row["redemption_id"] is not None:
        coupon = OrderCoupon(row["coupon_code"], row["discount_amount"], row["redemption_id"])
    lines = tuple(Line.from_json(line) for line in row["items"]) if row["items"] is not None else None
    return PlacedOrder(
        id=row["id"],
        user_id=row["user_id"],
        subtotal=row["subtotal"],
        total=row["total"],
        created_at=row["created_at"],
        lines=lines,
        session_id=row["session_id"],
        coupon=coupon,
    )
