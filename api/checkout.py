"""The existing Cartly checkout: products and orders exactly as in the seed, plus an
optional coupon that is redeemed with the order id as its idempotency key."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from api.errors import ApiError
from ledger.application import CouponLedger, Receipt
from ledger.money import CENT, MAX_AMOUNT

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

    def list_products(self) -> list[Product]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT id, name, price, stock FROM products ORDER BY id")
            return [Product(**row) for row in cur.fetchall()]

    def add_product(self, name: str, price: Decimal, stock: int) -> Product:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "INSERT INTO products (name, price, stock) VALUES (%s, %s, %s) RETURNING id, name, price, stock",
                (name, price, stock),
            )
            row = cur.fetchone()
        assert row is not None
        return Product(**row)

    def add_demo_products(self) -> None:
        for name, price, stock in DEMO_PRODUCTS:
            self.add_product(name, price, stock)

    def place_order(
        self, retailer_id: UUID, user_id: int, items: list[tuple[int, int]], coupon_code: str | None
    ) -> Order:
        wanted = Counter[int]()
        for product_id, quantity in items:
            wanted[product_id] += quantity
        with self.pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT id, price, stock FROM products WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                (list(wanted),),
            )
            products = {row["id"]: row for row in cur.fetchall()}
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
            receipt = None
            total = subtotal
            if coupon_code is not None:
                # Redeemed while this transaction holds the product rows: a coupon error
                # rolls the order back; the order id makes the redemption idempotent.
                receipt = self.ledger.apply(
                    retailer_id, coupon_code, subtotal, idempotency_key=f"order:{order_id}", order_id=str(order_id)
                )
                total = receipt.quote.final_total
            for product_id, quantity in wanted.items():
                cur.execute("UPDATE products SET stock = stock - %s WHERE id = %s", (quantity, product_id))
            cur.execute(
                "INSERT INTO orders (id, user_id, subtotal, total) VALUES (%s, %s, %s, %s) RETURNING created_at",
                (order_id, user_id, subtotal, total),
            )
            created = cur.fetchone()
            assert created is not None
            if receipt is not None:
                cur.execute(
                    "INSERT INTO order_coupons (order_id, retailer_id, coupon_code, redemption_id, discount_amount)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (order_id, retailer_id, receipt.quote.code, receipt.redemption_id, receipt.quote.discount_amount),
                )
        return Order(order_id, user_id, subtotal, total, created["created_at"], receipt)
