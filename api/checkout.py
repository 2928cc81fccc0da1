"""The existing Cartly checkout: products and orders as in the seed, each owned by a retailer,
plus an optional coupon that is redeemed with the order id as its idempotency key; and the order
placed from a checkout session (api/sessions.py), which confirms the session's coupon hold.

A retailer lists, adds and sells only its own products; another retailer's product is missing
to it, exactly like one that does not exist. Stock held for checkout sessions is not for sale to
anyone else: available = stock - live holds (of the other sessions).

With an Idempotency-Key, the order's response is recorded (``Claim.record``) in the transaction
that writes the order: both are stored or neither, so a retry can never place a second order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from fastapi.responses import JSONResponse
from psycopg import Connection
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from api.idempotency import Claim
from api.schemas import OrderPublic, OrderWithCouponPublic
from api.sessions import (
    DEFAULT_SESSION_TTL,
    DROP_HOLDS,
    SessionChanged,
    Sessions,
    held_by_others,
    lock_available,
    out_of_stock,
    read_session,
    retrying,
)
from ledger.application import CouponLedger
from ledger.commands import Confirm, InTransaction, Receipt, Redeem
from ledger.domain import Item
from ledger.domain import Order as Order_
from ledger.money import CENT, MAX_AMOUNT

# The caller's products among those asked for (read before anything is written, then again locked).
OWN_PRODUCTS = "SELECT id, price, stock FROM products WHERE retailer_id = %s AND id = ANY(%s)"

T = TypeVar("T")
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


def order_response(order: Order) -> JSONResponse:
    """The 201 of a checkout: the seed's order, and the coupon's fields when it used one."""
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


INSERT_ORDER = (
    "INSERT INTO orders (id, retailer_id, user_id, subtotal, total) VALUES (%s, %s, %s, %s, %s) RETURNING created_at"
)
INSERT_ORDER_COUPON = (
    "INSERT INTO order_coupons (order_id, retailer_id, coupon_code, redemption_id, discount_amount)"
    " VALUES (%s, %s, %s, %s, %s)"
)


class Checkout:
    def __init__(self, pool: ConnectionPool, ledger: CouponLedger, sessions: Sessions | None = None) -> None:
        self.pool = pool
        self.ledger = ledger
        self.sessions = sessions or Sessions(pool, ledger, DEFAULT_SESSION_TTL)

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
        self,
        retailer_id: UUID,
        user_id: int,
        items: list[tuple[int, int]],
        coupon_code: str | None,
        claim: Claim | None = None,
    ) -> JSONResponse:
        """Place an order: all or nothing. With a coupon, the order, its stock and the coupon's
        redemption are written in one transaction (the ledger writer's, which saves the
        redemption's events): a failure anywhere leaves no use consumed, no order, no stock change.
        The 201 response, recorded under ``claim`` in the same transaction."""
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
            check_stock(wanted, products, {})
            subtotal = sum((products[pid]["price"] * qty for pid, qty in wanted.items()), Decimal(0)).quantize(CENT)
            if subtotal > MAX_AMOUNT:  # the orders columns are numeric(14,2): refused before anything is written
                message = f"the order's subtotal {subtotal} would exceed {MAX_AMOUNT}"
                raise ApiError(
                    "VALIDATION_FAILED", "The request is not valid.", errors=[{"field": "items", "message": message}]
                )
            check_stock(wanted, products, held_by_others(conn, retailer_id, None, wanted, self.ledger.clock()))
        order_id = self._next_order_id()

        def write_order(conn: Connection[Any], receipt: Receipt | None) -> JSONResponse:
            if receipt is not None and receipt.replayed:  # never expected: order ids are never reused
                raise ApiError("IDEMPOTENCY_KEY_REUSED", f"Order {order_id} was already placed.", order_id=order_id)
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(OWN_PRODUCTS + " ORDER BY id FOR UPDATE", (retailer_id, list(wanted)))
                locked = {row["id"]: row for row in cur.fetchall()}
            check_stock(wanted, locked, held_by_others(conn, retailer_id, None, wanted, self.ledger.clock()))
            take_stock(conn, wanted)
            return record_order(conn, order_id, retailer_id, user_id, subtotal, receipt, claim)

        if coupon_code is None:
            with self.pool.connection() as conn, conn.transaction():
                return write_order(conn, None)
        # The order is the redemption's key (in a namespace of its own): a retry can never redeem twice.
        redeem = Redeem(
            retailer_id,
            coupon_code,
            Order_.of(None, [Item(str(pid), qty, products[pid]["price"]) for pid, qty in sorted(wanted.items())]),
            order_id=str(order_id),
            customer_id=str(user_id),  # per-customer limits hold at checkout too
            order_key=str(order_id),
        )
        return self.ledger.execute(InTransaction(redeem, write_order, locks=product_locks(wanted)))

    async def place_session_order(
        self, retailer_id: UUID, session_id: str, user_id: int, claim: Claim | None = None
    ) -> JSONResponse:
        """Place the order from a checkout session, all or nothing in one transaction: the order
        at the session's prices, its stock holds turned into decrements (items it does not hold
        need available stock), its coupon hold confirmed (in the ledger writer's transaction,
        which writes all of this), the session completed with the order id, the response recorded."""
        return await retrying(lambda: self._place_session_order_once(retailer_id, session_id, user_id, claim))

    async def _place_session_order_once(
        self, retailer_id: UUID, session_id: str, user_id: int, claim: Claim | None
    ) -> JSONResponse:
        session = await run_in_threadpool(self.sessions.find, retailer_id, session_id)
        session.check_open(self.ledger.clock())
        coupon = session.coupon
        if coupon is not None and coupon.customer_id is not None and coupon.customer_id != str(user_id):
            raise ApiError(
                "CUSTOMER_MISMATCH",
                f"The session's coupon {coupon.code} is held for customer {coupon.customer_id},"
                f" not for user {user_id}.",
                customer_id=coupon.customer_id,
                user_id=user_id,
            )
        order_id = await run_in_threadpool(self._next_order_id)

        def write_order(conn: Connection[Any], receipt: Receipt | None) -> JSONResponse:
            if receipt is not None and receipt.replayed:
                # The hold had been confirmed already: by the order that completed the session, or by
                # a confirm call outside the session.
                raise ApiError(
                    "INVALID_TRANSITION",
                    f"The coupon hold of checkout session {session_id} was confirmed outside the session;"
                    " remove the coupon or sync the cart to go on.",
                    session_id=session_id,
                    reservation_id=str(receipt.redemption_id),
                )
            now = self.ledger.clock()
            locked = read_session(conn, retailer_id, session_id, lock=True)
            if locked is None or locked.version != session.version:
                raise SessionChanged(session_id)
            locked.check_open(now)
            _, shortages = lock_available(conn, retailer_id, session_id, locked.wanted, now)
            if shortages:
                raise out_of_stock(shortages)
            take_stock(conn, locked.wanted)
            conn.execute(DROP_HOLDS, (retailer_id, session_id))
            response = record_order(conn, order_id, retailer_id, user_id, locked.subtotal, receipt, claim)
            conn.execute(  # after the order, which the session then names
                "UPDATE checkout_sessions SET status = 'completed', order_id = %s, version = version + 1,"
                " updated_at = %s WHERE retailer_id = %s AND id = %s",
                (order_id, now, retailer_id, session_id),
            )
            return response

        if coupon is None:
            return await run_in_threadpool(self._in_transaction, lambda conn: write_order(conn, None))
        confirm = Confirm(retailer_id, coupon.reservation_id, order_id=str(order_id))
        try:
            return await self.ledger.execute_async(
                InTransaction(confirm, write_order, locks=product_locks(session.wanted))
            )
        except ApiError as error:
            if error.code == "INVALID_TRANSITION":
                latest = await run_in_threadpool(self.sessions.find, retailer_id, session_id)
                latest.check_open(self.ledger.clock())
            raise

    def _next_order_id(self) -> int:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT nextval(pg_get_serial_sequence('orders', 'id'))").fetchone()
        assert row is not None
        return int(row[0])

    def _in_transaction(self, work: Callable[[Connection[Any]], T]) -> T:
        with self.pool.connection() as conn, conn.transaction():
            return work(conn)


def product_locks(wanted: Mapping[int, int]) -> tuple[tuple[str, int], ...]:
    """The product rows an order's transaction locks, for the writer to take in order for its batch."""
    return tuple(("products", product_id) for product_id in sorted(wanted))


def lock_rows(conn: Connection[Any], locks: list[tuple[str, int]]) -> None:
    """Lock the rows a batch's works declared, in id order (the writer's ``lock_rows``)."""
    products = sorted(row_id for table, row_id in locks if table == "products")
    if products:
        conn.execute("SELECT id FROM products WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (products,))


def take_stock(conn: Connection[Any], wanted: Mapping[int, int]) -> None:
    """Decrement the stock of products whose rows the transaction has locked and checked."""
    with conn.cursor() as cur:
        for product_id, quantity in sorted(wanted.items()):
            cur.execute("UPDATE products SET stock = stock - %s WHERE id = %s", (quantity, product_id))


def record_order(
    conn: Connection[Any],
    order_id: int,
    retailer_id: UUID,
    user_id: int,
    subtotal: Decimal,
    receipt: Receipt | None,
    claim: Claim | None,
) -> JSONResponse:
    """Insert the order (and, with a redeemed coupon, its order_coupons row) in the transaction of
    ``conn``; the 201 response, recorded under ``claim`` in that same transaction."""
    total = receipt.quote.final_total if receipt is not None else subtotal
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(INSERT_ORDER, (order_id, retailer_id, user_id, subtotal, total))
        created = cur.fetchone()
        assert created is not None
        if receipt is not None:
            quote = receipt.quote
            cur.execute(
                INSERT_ORDER_COUPON, (order_id, retailer_id, quote.code, receipt.redemption_id, quote.discount_amount)
            )
    response = order_response(Order(order_id, user_id, subtotal, total, created[0], receipt))
    if claim is not None:
        claim.record(conn, response.status_code, bytes(response.body))
    return response


def check_stock(wanted: Counter[int], products: dict[int, dict[str, Any]], held: dict[int, int]) -> None:
    """NOT_FOUND for a product not the caller's; OUT_OF_STOCK for the first one short of what is
    wanted (available: its stock less what live checkout sessions hold of it)."""
    missing = sorted(set(wanted) - set(products))
    if missing:
        raise ApiError("NOT_FOUND", f"Product {missing[0]} does not exist.", product_ids=missing)
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
            raise ApiError("OUT_OF_STOCK", message, product_id=product_id, requested=quantity, available=available)
