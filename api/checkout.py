"""The existing Cartly checkout: products and orders as in the seed, each owned by a retailer,
plus an optional coupon that is redeemed with the order id as its idempotency key.

A retailer lists, adds and sells only its own products; another retailer's product is missing
to it, exactly like one that does not exist."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from api.errors import ApiError
from ledger.application import CHECKOUT_KEY_PREFIX, CouponLedger, Receipt
from ledger.domain import Item
from ledger.money import CENT, MAX_AMOUNT

# The caller's products among those asked for (read before anything is written, then again locked).
OWN_PRODUCTS = "SELECT id, price, stock FROM products WHERE retailer_id = %s AND id = ANY(%s)"

DEMO_PRODUCTS = [
    ("Canvas tote bag", Decimal("24.00"), 100),
    ("Ceramic mug", Decimal("12.50"), 250),
    ("Linen apron", Decimal("39.90"), 40),
]


@dataclass(frozen=True)
class Product:
    id: int
    name: str
    price: Decimal
    stock: int


@dataclass(frozen=True)
class Order:
    id: int
    user_id: int
    subtotal: Decimal
    total: Decimal
    created_at: datetime
    receipt: Receipt | None


class Checkout:
    def __init__(self, pool: ConnectionPool, ledger: CouponLedger) -> None:
        self.pool = pool
        self.ledger = ledger

    def list_products(self, retailer_id: UUID) -> list[Product]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT id, name, price, stock FROM products WHERE retailer_id = %s ORDER BY id", (retailer_id,)
            )
            return [Product(**row) for row in cur.fetchall()]

    def add_product(self, retailer_id: UUID, name: str, price: Decimal, stock: int) -> Product:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "INSERT INTO products (retailer_id, name, price, stock) VALUES (%s, %s, %s, %s)"
                " RETURNING id, name, price, stock",
                (retailer_id, name, price, stock),
            )
            row = cur.fetchone()
        assert row is not None
        return Product(**row)

    def add_demo_products(self, retailer_id: UUID) -> None:
        for name, price, stock in DEMO_PRODUCTS:
            self.add_product(retailer_id, name, price, stock)

    def place_order(
        self, retailer_id: UUID, user_id: int, items: list[tuple[int, int]], coupon_code: str | None
    ) -> Order:
        """Place an order: all or nothing. With a coupon, the order, its stock and the coupon's
        redemption are written in one transaction (the ledger writer's, which saves the
        redemption's events): a failure anywhere leaves no use consumed, no order, no stock change."""
        wanted = Counter[int]()
        for product_id, quantity in items:
            wanted[product_id] += quantity
        # What can be checked before anything is written is checked here; the same checks are
        # made again under the rows' locks in the transaction that writes the order.
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            # Only the caller's products: another retailer's is missing here, exactly like one
            # that does not exist, and is neither locked nor changed.
            cur.execute(OWN_PRODUCTS, (retailer_id, list(wanted)))
            products = {row["id"]: row for row in cur.fetchall()}
            check_stock(wanted, products)
            subtotal = sum((products[pid]["price"] * qty for pid, qty in wanted.items()), Decimal(0)).quantize(CENT)
            if subtotal > MAX_AMOUNT:  # the orders columns are numeric(14,2): refused before anything is written
                message = f"the order's subtotal {subtotal} would exceed {MAX_AMOUNT}"
                raise ApiError(
                    "VALIDATION_FAILED", "The request is not valid.", errors=[{"field": "items", "message": message}]
                )
            cur.execute("SELECT nextval(pg_get_serial_sequence('orders', 'id')) AS id")
            order_row = cur.fetchone()
        assert order_row is not None
        order_id = int(order_row["id"])
        placed: list[datetime] = []

        def write_order(conn: Connection[Any], receipt: Receipt | None) -> None:
            total = receipt.quote.final_total if receipt is not None else subtotal
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(OWN_PRODUCTS + " ORDER BY id FOR UPDATE", (retailer_id, list(wanted)))
                check_stock(wanted, {row["id"]: row for row in cur.fetchall()})
                for product_id, quantity in sorted(wanted.items()):
                    cur.execute("UPDATE products SET stock = stock - %s WHERE id = %s", (quantity, product_id))
                cur.execute(
                    "INSERT INTO orders (id, retailer_id, user_id, subtotal, total) VALUES (%s, %s, %s, %s, %s)"
                    " RETURNING created_at",
                    (order_id, retailer_id, user_id, subtotal, total),
                )
                created = cur.fetchone()
                assert created is not None
                if receipt is not None:
                    cur.execute(
                        "INSERT INTO order_coupons"
                        " (order_id, retailer_id, coupon_code, redemption_id, discount_amount)"
                        " VALUES (%s, %s, %s, %s, %s)",
                        (
                            order_id,
                            retailer_id,
                            receipt.quote.code,
                            receipt.redemption_id,
                            receipt.quote.discount_amount,
                        ),
                    )
            placed.append(created["created_at"])

        receipt = None
        if coupon_code is None:
            with self.pool.connection() as conn, conn.transaction():
                write_order(conn, None)
        else:
            # The order id is the redemption's idempotency key: a retry can never redeem twice.
            receipt = self.ledger.apply(
                retailer_id,
                coupon_code,
                subtotal,
                idempotency_key=f"{CHECKOUT_KEY_PREFIX}{order_id}",
                order_id=str(order_id),
                also=write_order,
                customer_id=str(user_id),  # per-customer limits hold at checkout too
                # The order's lines, so that a coupon scoped to some products discounts those.
                items=[Item(str(pid), qty, products[pid]["price"]) for pid, qty in sorted(wanted.items())],
            )
        if not placed:  # the key was taken by an earlier apply call (the order was not written)
            raise ApiError(
                "IDEMPOTENCY_KEY_REUSED",
                f"The redemption key {CHECKOUT_KEY_PREFIX}{order_id} was already used by another request.",
                idempotency_key=f"{CHECKOUT_KEY_PREFIX}{order_id}",
            )
        total = receipt.quote.final_total if receipt is not None else subtotal
        return Order(order_id, user_id, subtotal, total, placed[0], receipt)


def check_stock(wanted: Counter[int], products: dict[int, dict[str, Any]]) -> None:
    missing = sorted(set(wanted) - set(products))
    if missing:
        raise ApiError("NOT_FOUND", f"Product {missing[0]} does not exist.", product_ids=missing)
    for product_id, quantity in sorted(wanted.items()):
        if products[product_id]["stock"] < quantity:
            raise ApiError(
                "OUT_OF_STOCK",
                f"Product {product_id} has {products[product_id]['stock']} in stock, {quantity} requested.",
                product_id=product_id,
                requested=quantity,
                available=products[product_id]["stock"],
            )
