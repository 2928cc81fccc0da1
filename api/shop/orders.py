"""Orders: the existing Cartly checkout (seed 000: products and orders, each owned by a
retailer), with an optional coupon redeemed with the order as its key, and the order placed from
a checkout session, which confirms the session's coupon hold.

An order is written all or nothing: with a coupon, in the ledger writer's transaction that saves
the redemption (``InTransaction``), so a failure anywhere leaves no use consumed, no order, no
stock change. What a call answers is the ``Order`` written in the attempt that committed; the
caller's ``record(connection, order)``, if given, runs in that same transaction (the route stores
its Idempotency-Key response there: both are stored or neither, and a replay answers exactly
the order placed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from psycopg import Connection
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from api.shop.errors import SessionChanged, ShopError, invalid, out_of_stock
from api.shop.order_reads import PlacedOrder, find_order
from api.shop.records import read_session
from api.shop.sessions import DEFAULT_SESSION_TTL, Sessions, retrying
from api.shop.stock import (
    DROP_HOLDS,
    Product,
    Products,
    check_stock,
    held_by_others,
    lock_available,
    own_products,
    product_locks,
    take_stock,
)
from ledger.application import CouponLedger
from ledger.commands import Confirm, InTransaction, Receipt, Redeem
from ledger.domain import Item
from ledger.domain import Order as Priced
from ledger.money import CENT, MAX_AMOUNT

T = TypeVar("T")

INSERT_ORDER = (
    "INSERT INTO orders (id, retailer_id, user_id, subtotal, total) VALUES (%s, %s, %s, %s, %s) RETURNING created_at"
)
INSERT_ORDER_COUPON = (
    "INSERT INTO order_coupons (order_id, retailer_id, coupon_code, redemption_id, discount_amount)"
    " VALUES (%s, %s, %s, %s, %s)"
)


@dataclass(frozen=True)
class Order:
    """An order as stored; ``receipt``: the coupon's redemption, when it used one."""

    id: int
    user_id: int
    subtotal: Decimal
    total: Decimal
    created_at: datetime
    receipt: Receipt | None


Record = Callable[[Connection[Any], Order], None]  # run in the order's transaction, after it is written


class Checkout:
    def __init__(self, pool: ConnectionPool, ledger: CouponLedger, sessions: Sessions | None = None) -> None:
        self.pool = pool
        self.ledger = ledger
        self.products = Products(pool)
        self.sessions = sessions or Sessions(pool, ledger, DEFAULT_SESSION_TTL)

    def list_products(self, retailer_id: UUID) -> list[Product]:
        return self.products.list(retailer_id)

    def add_product(self, retailer_id: UUID, name: str, price: Decimal, stock: int) -> Product:
        return self.products.add(retailer_id, name, price, stock)

    def get_order(self, retailer_id: UUID, order_id: str) -> PlacedOrder:
        """The retailer's order ``order_id`` as sent (api/shop/order_reads.py); NOT_FOUND if none."""
        return find_order(self.pool, retailer_id, order_id)

    def add_demo_products(self, retailer_id: UUID) -> None:
        self.products.add_demo(retailer_id)

    def place_order(
        self,
        retailer_id: UUID,
        user_id: int,
        items: list[tuple[int, int]],
        coupon_code: str | None,
        record: Record | None = None,
    ) -> Order:
        """Place an order: all or nothing, the coupon redeemed in the same transaction. Answers
        the order the committed transaction wrote (``record`` ran in that transaction)."""
        wanted = Counter[int]()
        for product_id, quantity in items:
            wanted[product_id] += quantity
        # What can be checked before anything is written is checked here; the same checks are
        # made again under the rows' locks in the transaction that writes the order.
        with self.pool.connection() as conn:
            # Only the caller's products: another retailer's is missing here, exactly like one
            # that does not exist, and is neither locked nor changed.
            products = own_products(conn, retailer_id, wanted)
            check_stock(wanted, products, {})
            subtotal = sum((products[pid]["price"] * qty for pid, qty in wanted.items()), Decimal(0)).quantize(CENT)
            if subtotal > MAX_AMOUNT:  # the orders columns are numeric(14,2): refused before anything is written
                raise invalid("items", f"the order's subtotal {subtotal} would exceed {MAX_AMOUNT}")
            check_stock(wanted, products, held_by_others(conn, retailer_id, None, wanted, self.ledger.clock()))
        order_id = self._next_order_id()

        def write_order(conn: Connection[Any], receipt: Receipt | None) -> Order:
            if receipt is not None and receipt.replayed:  # never expected: order ids are never reused
                raise ShopError("IDEMPOTENCY_KEY_REUSED", f"Order {order_id} was already placed.", order_id=order_id)
            locked = own_products(conn, retailer_id, wanted, lock=True)
            check_stock(wanted, locked, held_by_others(conn, retailer_id, None, wanted, self.ledger.clock()))
            take_stock(conn, wanted)
            return write(conn, order_id, retailer_id, user_id, subtotal, receipt, record)

        if coupon_code is None:
            return self._in_transaction(lambda conn: write_order(conn, None))
        # The order is the redemption's key (in a namespace of its own): a retry can never redeem twice.
        redeem = Redeem(
            retailer_id,
            coupon_code,
            Priced.of(None, [Item(str(pid), qty, products[pid]["price"]) for pid, qty in sorted(wanted.items())]),
            order_id=str(order_id),
            customer_id=str(user_id),  # per-customer limits hold at checkout too
            order_key=str(order_id),
        )
        return self.ledger.execute(InTransaction(redeem, write_order, locks=product_locks(wanted)))

    async def place_session_order(
        self, retailer_id: UUID, session_id: str, user_id: int, record: Record | None = None
    ) -> Order:
        """Place the order from a checkout session, all or nothing in one transaction: the order
        at the session's prices, its stock holds turned into decrements (items it does not hold
        need available stock), its coupon hold confirmed (in the ledger writer's transaction,
        which writes all of this), the session completed with the order id, ``record`` run."""
        return await retrying(lambda: self._place_session_order_once(retailer_id, session_id, user_id, record))

    async def _place_session_order_once(
        self, retailer_id: UUID, session_id: str, user_id: int, record: Record | None
    ) -> Order:
        session = await run_in_threadpool(self.sessions.find, retailer_id, session_id)
        session.check_open(self.ledger.clock())
        coupon = session.coupon
        if coupon is not None and coupon.customer_id is not None and coupon.customer_id != str(user_id):
            raise ShopError(
                "CUSTOMER_MISMATCH",
                f"The session's coupon {coupon.code} is held for customer {coupon.customer_id},"
                f" not for user {user_id}.",
                customer_id=coupon.customer_id,
                user_id=user_id,
            )
        order_id = await run_in_threadpool(self._next_order_id)

        def write_order(conn: Connection[Any], receipt: Receipt | None) -> Order:
            if receipt is not None and receipt.replayed:
                # The hold had been confirmed already: by the order that completed the session, or by
                # a confirm call outside the session.
                raise ShopError(
                    "INVALID_TRANSITION",
                    f"The coupon hold of checkout session {session_id} was confirmed outside the session;"
                    " remove the coupon or sync the cart to go on.",
                    session_id=session_id,
                    reservation_id=str(session.coupon.reservation_id) if session.coupon is not None else None,
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
            order = write(conn, order_id, retailer_id, user_id, locked.subtotal, receipt, None)
            conn.execute(  # after the order, which the session then names
                "UPDATE checkout_sessions SET status = 'completed', order_id = %s, version = version + 1,"
                " updated_at = %s WHERE retailer_id = %s AND id = %s",
                (order_id, now, retailer_id, session_id),
            )
            if record is not None:
                record(conn, order)
            return order

        if coupon is None:
            return await run_in_threadpool(self._in_transaction, lambda conn: write_order(conn, None))
        confirm = Confirm(retailer_id, coupon.reservation_id, order_id=str(order_id))
        try:
            return await self.ledger.execute_async(
                InTransaction(confirm, write_order, locks=product_locks(session.wanted))
            )
        except ShopError as error:
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


def write(
    conn: Connection[Any],
    order_id: int,
    retailer_id: UUID,
    user_id: int,
    subtotal: Decimal,
    receipt: Receipt | None,
    record: Record | None,
) -> Order:
    """Insert the order (and, with a redeemed coupon, its order_coupons row) in the transaction of
    ``conn``, run ``record`` in it, and answer the order as written."""
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
    order = Order(order_id, user_id, subtotal, total, created[0], receipt)
    if record is not None:
        record(conn, order)
    return order
