"""Products and their stock: the caller's products only (another retailer's is missing to it,
exactly like one that does not exist), stock held for checkout sessions (available = stock -
live holds of the other sessions), and the row locks a transaction takes, always in id order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

from api.shop.errors import ShopError, Shortage, product_not_found

# The caller's products among those asked for (read before anything is written, then again locked).
OWN_PRODUCTS = "SELECT id, price, stock FROM products WHERE retailer_id = %s AND id = ANY(%s)"
# Live stock holds of other sessions on some products: a hold counts while it and its session are live.
HELD_BY_OTHERS = """
SELECT h.product_id, sum(h.quantity)::bigint FROM inventory_holds h
JOIN checkout_sessions s ON s.retailer_id = h.retailer_id AND s.id = h.session_id
WHERE h.product_id = ANY(%(products)s) AND h.expires_at > %(now)s
  AND s.status = 'open' AND s.expires_at > %(now)s
  AND NOT (h.retailer_id = %(retailer_id)s AND h.session_id = %(session_id)s)
GROUP BY h.product_id
"""
OWN_HOLDS = """
SELECT h.product_id, h.quantity, h.expires_at FROM inventory_holds h
JOIN checkout_sessions s ON s.retailer_id = h.retailer_id AND s.id = h.session_id
WHERE h.retailer_id = %(retailer_id)s AND h.session_id = %(session_id)s AND h.expires_at > %(now)s
  AND s.status = 'open' AND s.expires_at > %(now)s
ORDER BY h.product_id
"""
DROP_HOLDS = "DELETE FROM inventory_holds WHERE retailer_id = %s AND session_id = %s"
PRODUCTS = "products"
SHOPPERS = "shoppers"  # advisory locks: one per shopper whose holds are counted (api/shop/shoppers.py)

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


class Products:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def list(self, retailer_id: UUID) -> list[Product]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT id, name, price, stock FROM products WHERE retailer_id = %s ORDER BY id", (retailer_id,)
            )
            return [Product(**row) for row in cur.fetchall()]

    def add(self, retailer_id: UUID, name: str, price: Decimal, stock: int) -> Product:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "INSERT INTO products (retailer_id, name, price, stock) VALUES (%s, %s, %s, %s)"
                " RETURNING id, name, price, stock",
                (retailer_id, name, price, stock),
            )
            row = cur.fetchone()
        assert row is not None
        return Product(**row)

    def add_demo(self, retailer_id: UUID) -> None:
        for name, price, stock in DEMO_PRODUCTS:
            self.add(retailer_id, name, price, stock)


def product_locks(wanted: Iterable[int]) -> tuple[tuple[str, Any], ...]:
    """The product rows an order's transaction locks, for the writer to take in order for its batch."""
    return tuple((PRODUCTS, product_id) for product_id in sorted(wanted))


def lock_rows(conn: Connection[Any], locks: Sequence[tuple[str, Any]]) -> None:
    """Take the locks a batch's works declared (the writer's ``lock_rows``): the products' rows in
    id order, then the shoppers' advisory locks in key order. Every transaction of the shop takes
    its locks in that order, so none waits on another in a circle."""
    products = sorted(key for kind, key in locks if kind == PRODUCTS)
    if products:
        conn.execute("SELECT id FROM products WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (products,))
    lock_shoppers(conn, [key for kind, key in locks if kind == SHOPPERS])


def lock_shoppers(conn: Connection[Any], keys: Iterable[str]) -> None:
    """Advisory locks, until the transaction ends, on these shoppers' hold counts (in key order)."""
    for key in sorted(set(keys)):
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))


def take_stock(conn: Connection[Any], wanted: Mapping[int, int]) -> None:
    """Decrement the stock of products whose rows the transaction has locked and checked."""
    with conn.cursor() as cur:
        for product_id, quantity in sorted(wanted.items()):
            cur.execute("UPDATE products SET stock = stock - %s WHERE id = %s", (quantity, product_id))


def held_by_others(
    conn: Connection[Any], retailer_id: UUID, session_id: str | None, product_ids: Iterable[int], now: datetime
) -> dict[int, int]:
    """Units of each product held by live sessions other than ``session_id`` (None: by any)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(
            HELD_BY_OTHERS,
            {"products": list(product_ids), "now": now, "retailer_id": retailer_id, "session_id": session_id or ""},
        )
        return {int(product_id): int(quantity) for product_id, quantity in cur.fetchall()}


def own_products(conn: Connection[Any], retailer_id: UUID, wanted: Iterable[int], lock: bool = False) -> dict[int, Any]:
    """The caller's products among ``wanted`` (id -> row with price and stock); locked in id order."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(OWN_PRODUCTS + (" ORDER BY id FOR UPDATE" if lock else ""), (retailer_id, sorted(wanted)))
        return {row["id"]: row for row in cur.fetchall()}


def check_stock(wanted: Mapping[int, int], products: Mapping[int, Any], held: Mapping[int, int]) -> None:
    """NOT_FOUND for a product not the caller's; OUT_OF_STOCK for the first one short of what is
    wanted (available: its stock less what live checkout sessions hold of it)."""
    missing = sorted(set(wanted) - set(products))
    if missing:
        raise product_not_found(missing)
    for product_id, quantity in sorted(wanted.items()):
        stock = products[product_id]["stock"]
        available = max(stock - held.get(product_id, 0), 0)
        if available < quantity:
            message = f"Product {product_id} has {stock} in stock, {quantity} requested."
            if held.get(product_id):
                message = (
                    f"Product {product_id} has {available} available ({stock} in stock,"
                    f" {held[product_id]} held for checkout sessions), {quantity} requested."
                )
            raise ShopError("OUT_OF_STOCK", message, product_id=product_id, requested=quantity, available=available)


def lock_available(
    conn: Connection[Any], retailer_id: UUID, session_id: str | None, wanted: Mapping[int, int], now: datetime
) -> tuple[dict[int, int], list[Shortage]]:
    """Lock the wanted products' rows (in id order) and return their stock, and every product
    short of what is wanted (available: stock - live holds of the other sessions). A product no
    longer the retailer's is NOT_FOUND."""
    stock = {int(pid): int(row["stock"]) for pid, row in own_products(conn, retailer_id, wanted, lock=True).items()}
    missing = sorted(set(wanted) - set(stock))
    if missing:
        raise product_not_found(missing)
    held = held_by_others(conn, retailer_id, session_id, wanted, now)
    shortages = [
        Shortage(product_id, quantity, max(stock[product_id] - held.get(product_id, 0), 0))
        for product_id, quantity in sorted(wanted.items())
        if quantity > stock[product_id] - held.get(product_id, 0)
    ]
    return stock, shortages
