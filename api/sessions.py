"""Checkout sessions (seed 004's cart-summary, validate-coupon, remove-coupon, hold-inventory).

A session is a cart the server priced from the retailer's ``products`` (the prices are those of
its last sync: what the shopper was shown is what the order costs), at most one coupon held for it
(a ledger reservation: one use, counted against every limit until the session ends), and stock
held for its items (``inventory_holds``). Every change to the cart or its coupon moves its expiry
to ``session_ttl_seconds`` from now; holding stock does not.

Concurrency. The coupon changes are ledger commands (reserve, release) whose ``also=`` updates the
session row in the transaction that saves the hold, under an optimistic check of the session's
``version``: of two concurrent calls on one session, the second's update finds another version,
its hold is not saved, and it starts again from the session as the first left it. So a session
always knows the one hold it has. A request thread never holds a session's (or a product's) row
lock while it waits for the ledger writer: the writer's transaction may need those rows.
Stock holds lock the products' rows (in id order) for the check, so two sessions never hold the
same unit: available = stock - live holds of the other sessions.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from psycopg import Connection
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from ledger.application import CouponLedger
from ledger.commands import Hold, InTransaction, Release, Reserve
from ledger.domain import Item, Order
from ledger.errors import LedgerError
from ledger.money import CENT, MAX_AMOUNT, format_amount
from ledger.timestamps import format_timestamp

T = TypeVar("T")
ZERO = Decimal("0.00")
DEFAULT_SESSION_TTL = 30 * 60
ATTEMPTS = 8  # optimistic retries of a change that met a concurrent one
# The ledger's refusals that mean "this coupon does not apply to this cart (any more)".
COUPON_REFUSALS = frozenset(
    {
        "COUPON_NOT_FOUND",
        "COUPON_INACTIVE",
        "COUPON_NOT_STARTED",
        "COUPON_EXPIRED",
        "USAGE_LIMIT_REACHED",
        "CUSTOMER_ID_REQUIRED",
        "CUSTOMER_LIMIT_REACHED",
        "CAMPAIGN_BUDGET_EXHAUSTED",
        "MIN_ORDER_NOT_MET",
        "COUPON_NOT_APPLICABLE",
    }
)
COLUMNS = (
    "id, items, subtotal, coupon_code, customer_id, reservation_id, discount_amount, free_shipping,"
    " status, order_id, version, created_at, updated_at, expires_at"
)
READ = f"SELECT {COLUMNS} FROM checkout_sessions WHERE retailer_id = %s AND id = %s"
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


class SessionChanged(Exception):
    """The session changed since it was read: the change is not saved, and is made again."""


@dataclass(frozen=True)
class Line:
    product_id: int
    name: str
    quantity: int
    unit_price: Decimal

    @property
    def total(self) -> Decimal:
        return (self.unit_price * self.quantity).quantize(CENT)

    def as_json(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "name": self.name,
            "quantity": self.quantity,
            "unit_price": format_amount(self.unit_price),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Line:
        return cls(int(data["product_id"]), str(data["name"]), int(data["quantity"]), Decimal(data["unit_price"]))

    def as_item(self) -> Item:
        return Item(str(self.product_id), self.quantity, self.unit_price)


@dataclass(frozen=True)
class SessionCoupon:
    code: str
    customer_id: str | None
    reservation_id: UUID
    discount_amount: Decimal
    free_shipping: bool

    @classmethod
    def of(cls, hold: Hold, customer_id: str | None) -> SessionCoupon:
        quote = hold.quote
        return cls(quote.code, customer_id, hold.reservation_id, quote.discount_amount, quote.free_shipping)


@dataclass(frozen=True)
class HeldStock:
    expires_at: datetime
    items: tuple[tuple[int, int], ...]  # (product_id, quantity)


@dataclass(frozen=True)
class Session:
    retailer_id: UUID
    id: str
    lines: tuple[Line, ...]
    subtotal: Decimal
    coupon: SessionCoupon | None
    stored_status: str
    order_id: int | None
    version: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    held: HeldStock | None = None

    def status(self, now: datetime) -> str:
        if self.stored_status == "completed":
            return "completed"
        return "open" if now < self.expires_at else "expired"

    @property
    def discount_amount(self) -> Decimal:
        return self.coupon.discount_amount if self.coupon is not None else ZERO

    @property
    def total(self) -> Decimal:
        return self.subtotal - self.discount_amount

    @property
    def wanted(self) -> dict[int, int]:
        return {line.product_id: line.quantity for line in self.lines}

    def items(self) -> list[Item]:
        return [line.as_item() for line in self.lines]

    def check_open(self, now: datetime) -> None:
        """SESSION_COMPLETED once its order is placed, SESSION_EXPIRED once it has expired."""
        if self.stored_status == "completed":
            raise ApiError(
                "SESSION_COMPLETED",
                f"Checkout session {self.id} is completed: order {self.order_id} was placed from it.",
                session_id=self.id,
                order_id=self.order_id,
            )
        if now >= self.expires_at:
            raise ApiError(
                "SESSION_EXPIRED",
                f"Checkout session {self.id} expired at {format_timestamp(self.expires_at)};"
                " sync the cart to start it again.",
                session_id=self.id,
                expired_at=format_timestamp(self.expires_at),
            )


@dataclass(frozen=True)
class CouponRemoved:
    """The coupon a sync dropped, and the ledger's refusal that says why."""

    code: str
    error: LedgerError


@dataclass(frozen=True)
class Synced:
    session: Session
    created: bool
    coupon_removed: CouponRemoved | None


@dataclass(frozen=True)
class Shortage:
    product_id: int
    requested: int
    available: int


def session_not_found(session_id: str) -> ApiError:
    return ApiError("NOT_FOUND", f"Checkout session {session_id} does not exist.", session_id=session_id)


def out_of_stock(shortages: Sequence[Shortage]) -> ApiError:
    """409 OUT_OF_STOCK naming every short product; the first one's figures also at the top level."""
    first = shortages[0]
    named = "; ".join(f"product {s.product_id}: {s.requested} requested, {s.available} available" for s in shortages)
    return ApiError(
        "OUT_OF_STOCK",
        f"Not enough stock ({named}).",
        product_id=first.product_id,
        requested=first.requested,
        available=first.available,
        products=[{"product_id": s.product_id, "requested": s.requested, "available": s.available} for s in shortages],
    )


def read_session(conn: Connection[Any], retailer_id: UUID, session_id: str, lock: bool = False) -> Session | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(READ + (" FOR UPDATE" if lock else ""), (retailer_id, session_id))
        row = cur.fetchone()
    if row is None:
        return None
    coupon = None
    if row["reservation_id"] is not None:
        coupon = SessionCoupon(
            code=row["coupon_code"],
            customer_id=row["customer_id"],
            reservation_id=row["reservation_id"],
            discount_amount=row["discount_amount"],
            free_shipping=bool(row["free_shipping"]),
        )
    return Session(
        retailer_id=retailer_id,
        id=row["id"],
        lines=tuple(Line.from_json(line) for line in row["items"]),
        subtotal=row["subtotal"],
        coupon=coupon,
        stored_status=row["status"],
        order_id=row["order_id"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        expires_at=row["expires_at"],
    )


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


def lock_available(
    conn: Connection[Any], retailer_id: UUID, session_id: str | None, wanted: dict[int, int], now: datetime
) -> tuple[dict[int, int], list[Shortage]]:
    """Lock the wanted products' rows (in id order: two transactions never wait on each other in
    a circle) and return their stock, and every product short of what is wanted (available:
    stock - live holds of the other sessions). A product no longer the retailer's is NOT_FOUND."""
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(
            "SELECT id, stock FROM products WHERE retailer_id = %s AND id = ANY(%s) ORDER BY id FOR UPDATE",
            (retailer_id, sorted(wanted)),
        )
        stock = {int(product_id): int(units) for product_id, units in cur.fetchall()}
    missing = sorted(set(wanted) - set(stock))
    if missing:
        raise ApiError("NOT_FOUND", f"Product {missing[0]} does not exist.", product_ids=missing)
    held = held_by_others(conn, retailer_id, session_id, wanted, now)
    shortages = [
        Shortage(product_id, quantity, max(stock[product_id] - held.get(product_id, 0), 0))
        for product_id, quantity in sorted(wanted.items())
        if quantity > stock[product_id] - held.get(product_id, 0)
    ]
    return stock, shortages


def new_session_id() -> str:
    return "cs_" + secrets.token_urlsafe(18)


class Sessions:
    def __init__(self, pool: ConnectionPool, ledger: CouponLedger, ttl_seconds: int) -> None:
        self.pool = pool
        self.ledger = ledger
        self.ttl_seconds = ttl_seconds

    def now(self) -> datetime:
        return self.ledger.clock()

    # --- reads ------------------------------------------------------------------------------------

    def get(self, retailer_id: UUID, session_id: str) -> Session:
        """The session with its live stock hold; NOT_FOUND if it is not this retailer's."""
        now = self.now()
        with self.pool.connection() as conn:
            session = read_session(conn, retailer_id, session_id)
            if session is None:
                raise session_not_found(session_id)
            with conn.cursor() as cur:
                cur.execute(OWN_HOLDS, {"retailer_id": retailer_id, "session_id": session_id, "now": now})
                rows = cur.fetchall()
        if not rows:
            return session
        held = HeldStock(min(row[2] for row in rows), tuple((int(row[0]), int(row[1])) for row in rows))
        return replace(session, held=held)

    def _read(self, retailer_id: UUID, session_id: str) -> Session | None:
        with self.pool.connection() as conn:
            return read_session(conn, retailer_id, session_id)

    def find(self, retailer_id: UUID, session_id: str) -> Session:
        """The session as stored (without its stock hold); NOT_FOUND if it is not this retailer's."""
        session = self._read(retailer_id, session_id)
        if session is None:
            raise session_not_found(session_id)
        return session

    def _price(self, retailer_id: UUID, items: Sequence[tuple[int, int]]) -> tuple[tuple[Line, ...], Decimal]:
        """The cart's lines priced from the retailer's products (a product sent twice is one line)."""
        wanted: dict[int, int] = {}
        for product_id, quantity in items:
            wanted[product_id] = wanted.get(product_id, 0) + quantity
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, name, price FROM products WHERE retailer_id = %s AND id = ANY(%s)",
                (retailer_id, list(wanted)),
            ).fetchall()
        products = {int(row[0]): (str(row[1]), Decimal(row[2])) for row in rows}
        missing = sorted(set(wanted) - set(products))
        if missing:
            names = ", ".join(str(m) for m in missing)
            raise ApiError("NOT_FOUND", f"No product {names} in this store.", product_ids=missing)
        too_many = [pid for pid, quantity in wanted.items() if quantity > 10_000]
        if too_many:
            raise ApiError(
                "VALIDATION_FAILED",
                "The request is not valid.",
                errors=[{"field": "items", "message": f"product {too_many[0]}: at most 10000 units in all"}],
            )
        lines = tuple(Line(pid, products[pid][0], quantity, products[pid][1]) for pid, quantity in wanted.items())
        subtotal = sum((line.total for line in lines), ZERO)
        if subtotal > MAX_AMOUNT:
            raise ApiError(
                "VALIDATION_FAILED",
                "The request is not valid.",
                errors=[{"field": "items", "message": f"the cart's subtotal {subtotal} would exceed {MAX_AMOUNT}"}],
            )
        return lines, subtotal

    def _in_transaction(self, work: Callable[[Connection[Any]], None]) -> None:
        with self.pool.connection() as conn, conn.transaction():
            work(conn)

    # --- writes in a transaction (a request thread's, or the ledger writer's) ---------------------

    @staticmethod
    def _save_cart(
        conn: Connection[Any],
        retailer_id: UUID,
        session_id: str,
        current: Session | None,
        lines: Sequence[Line],
        subtotal: Decimal,
        coupon: SessionCoupon | None,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        """Write the synced cart (and its coupon) and drop the session's stock holds; SessionChanged
        if the session is not as it was read."""
        items = Jsonb([line.as_json() for line in lines])
        coupon_values = (
            (coupon.code, coupon.customer_id, coupon.reservation_id, coupon.discount_amount, coupon.free_shipping)
            if coupon is not None
            else (None, None, None, None, None)
        )
        if current is None:
            cursor = conn.execute(
                "INSERT INTO checkout_sessions (retailer_id, id, items, subtotal, coupon_code, customer_id,"
                " reservation_id, discount_amount, free_shipping, status, version, created_at, updated_at, expires_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'open', 1, %s, %s, %s) ON CONFLICT DO NOTHING",
                (retailer_id, session_id, items, subtotal, *coupon_values, now, now, expires_at),
            )
        else:
            cursor = conn.execute(
                "UPDATE checkout_sessions SET items = %s, subtotal = %s, coupon_code = %s, customer_id = %s,"
                " reservation_id = %s, discount_amount = %s, free_shipping = %s, status = 'open',"
                " version = version + 1, updated_at = %s, expires_at = %s"
                " WHERE retailer_id = %s AND id = %s AND version = %s AND status <> 'completed'",
                (items, subtotal, *coupon_values, now, expires_at, retailer_id, session_id, current.version),
            )
        if cursor.rowcount != 1:
            raise SessionChanged(session_id)
        conn.execute(DROP_HOLDS, (retailer_id, session_id))

    @staticmethod
    def _save_coupon(
        conn: Connection[Any],
        session: Session,
        coupon: SessionCoupon | None,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        """Set (or clear) the session's coupon; SessionChanged unless the session is as it was read
        and still open."""
        values = (
            (coupon.code, coupon.customer_id, coupon.reservation_id, coupon.discount_amount, coupon.free_shipping)
            if coupon is not None
            else (None, None, None, None, None)
        )
        cursor = conn.execute(
            "UPDATE checkout_sessions SET coupon_code = %s, customer_id = %s, reservation_id = %s,"
            " discount_amount = %s, free_shipping = %s, version = version + 1, updated_at = %s, expires_at = %s"
            " WHERE retailer_id = %s AND id = %s AND version = %s AND status = 'open' AND expires_at > %s",
            (*values, now, expires_at, session.retailer_id, session.id, session.version, now),
        )
        if cursor.rowcount != 1:
            raise SessionChanged(session.id)

    # --- commands -----------------------------------------------------------------------------------

    async def sync(
        self, retailer_id: UUID, session_id: str | None, items: Sequence[tuple[int, int]], subtotal: Decimal | None
    ) -> Synced:
        """Create the session, or re-sync its cart: priced again, its stock holds released, its
        coupon held again at the new price (or dropped, saying why, if it no longer applies)."""
        lines, priced = await run_in_threadpool(self._price, retailer_id, items)
        if subtotal is not None and subtotal != priced:
            raise ApiError(
                "SUBTOTAL_MISMATCH",
                f"The subtotal {format_amount(subtotal)} differs from the cart's {format_amount(priced)}"
                " (priced from the store's products).",
                subtotal=format_amount(subtotal),
                items_subtotal=format_amount(priced),
            )
        sid = session_id or new_session_id()
        return await retrying(lambda: self._sync_once(retailer_id, sid, lines, priced))

    async def _sync_once(
        self, retailer_id: UUID, session_id: str, lines: tuple[Line, ...], subtotal: Decimal
    ) -> Synced:
        current = await run_in_threadpool(self._read, retailer_id, session_id)
        if current is not None and current.stored_status == "completed":
            current.check_open(self.now())  # SESSION_COMPLETED
        removed = await self._save_synced(retailer_id, session_id, current, lines, subtotal)
        session = await run_in_threadpool(self.get, retailer_id, session_id)
        return Synced(session, current is None, removed)

    async def _save_synced(
        self,
        retailer_id: UUID,
        session_id: str,
        current: Session | None,
        lines: tuple[Line, ...],
        subtotal: Decimal,
    ) -> CouponRemoved | None:
        now = self.now()
        expires_at = now + timedelta(seconds=self.ttl_seconds)
        coupon = current.coupon if current is not None else None
        if coupon is None:
            await run_in_threadpool(
                self._in_transaction,
                lambda conn: self._save_cart(
                    conn, retailer_id, session_id, current, lines, subtotal, None, now, expires_at
                ),
            )
            return None

        customer_id = coupon.customer_id

        def save_with_hold(conn: Connection[Any], hold: Hold) -> None:
            held = SessionCoupon.of(hold, customer_id)
            self._save_cart(conn, retailer_id, session_id, current, lines, subtotal, held, now, hold.expires_at)

        reserve = Reserve(
            retailer_id,
            coupon.code,
            Order.of(subtotal, [line.as_item() for line in lines]),
            customer_id=coupon.customer_id,
            ttl_seconds=self.ttl_seconds,
            release=coupon.reservation_id,
        )
        try:
            await self.ledger.execute_async(InTransaction(reserve, save_with_hold))
            return None
        except LedgerError as error:
            if error.code not in COUPON_REFUSALS:
                raise
            refusal = error
        # The coupon no longer applies to this cart: the session drops it (and its hold).
        await self._release(
            retailer_id,
            coupon.reservation_id,
            lambda conn: self._save_cart(
                conn, retailer_id, session_id, current, lines, subtotal, None, now, expires_at
            ),
        )
        return CouponRemoved(coupon.code, refusal)

    async def _release(self, retailer_id: UUID, reservation_id: UUID, save: Callable[[Connection[Any]], None]) -> None:
        """Release the hold and run ``save`` in the transaction that records it; a hold that had
        already ended (expired, released) gives the ledger nothing to record, and ``save`` runs in
        a transaction of its own. Returns once ``save`` committed."""
        try:
            await self.ledger.execute_async(
                InTransaction(Release(retailer_id, reservation_id), lambda conn, ended: save(conn))
            )
        except LedgerError as error:
            # Confirmed or missing: nothing of the session's to release any more.
            if error.code not in ("INVALID_TRANSITION", "RESERVATION_NOT_FOUND"):
                raise
            await run_in_threadpool(self._in_transaction, save)

    async def apply_coupon(self, retailer_id: UUID, session_id: str, code: str, customer_id: str | None) -> Session:
        """Validate the coupon against the session's cart and hold one use until the session
        expires, in place of the session's previous coupon (released in the same save). A
        refused coupon changes nothing: the previous one stays."""
        await retrying(lambda: self._apply_coupon_once(retailer_id, session_id, code, customer_id))
        return await run_in_threadpool(self.get, retailer_id, session_id)

    async def _apply_coupon_once(self, retailer_id: UUID, session_id: str, code: str, customer_id: str | None) -> None:
        session = await run_in_threadpool(self.find, retailer_id, session_id)
        now = self.now()
        session.check_open(now)

        def save(conn: Connection[Any], hold: Hold) -> None:
            self._save_coupon(conn, session, SessionCoupon.of(hold, customer_id), now, hold.expires_at)

        reserve = Reserve(
            retailer_id,
            code,
            Order.of(session.subtotal, session.items()),
            customer_id=customer_id,
            ttl_seconds=self.ttl_seconds,
            release=session.coupon.reservation_id if session.coupon is not None else None,
        )
        await self.ledger.execute_async(InTransaction(reserve, save))

    async def remove_coupon(self, retailer_id: UUID, session_id: str) -> Session:
        """Release the session's coupon hold; without one, nothing changes."""
        await retrying(lambda: self._remove_coupon_once(retailer_id, session_id))
        return await run_in_threadpool(self.get, retailer_id, session_id)

    async def _remove_coupon_once(self, retailer_id: UUID, session_id: str) -> None:
        session = await run_in_threadpool(self.find, retailer_id, session_id)
        now = self.now()
        session.check_open(now)
        if session.coupon is None:
            return
        expires_at = now + timedelta(seconds=self.ttl_seconds)
        await self._release(
            retailer_id,
            session.coupon.reservation_id,
            lambda conn: self._save_coupon(conn, session, None, now, expires_at),
        )

    def hold_inventory(self, retailer_id: UUID, session_id: str, ttl_seconds: int | None) -> Session:
        """Hold stock for every item of the session, all or nothing, in place of its previous
        hold; until ``ttl_seconds`` from now, at most until the session expires."""
        now = self.now()
        with self.pool.connection() as conn, conn.transaction():
            session = read_session(conn, retailer_id, session_id, lock=True)
            if session is None:
                raise session_not_found(session_id)
            session.check_open(now)
            expires_at = session.expires_at
            if ttl_seconds is not None:
                expires_at = min(expires_at, now + timedelta(seconds=ttl_seconds))
            _, shortages = lock_available(conn, retailer_id, session_id, session.wanted, now)
            if shortages:
                raise out_of_stock(shortages)
            with conn.cursor() as cur:
                cur.execute(DROP_HOLDS, (retailer_id, session_id))
                cur.executemany(
                    "INSERT INTO inventory_holds (retailer_id, session_id, product_id, quantity, expires_at)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    [
                        (retailer_id, session_id, pid, units, expires_at)
                        for pid, units in sorted(session.wanted.items())
                    ],
                )
        return self.get(retailer_id, session_id)

    def cleanup(self, now: datetime | None = None) -> tuple[int, int]:
        """cleanup_expired_sessions on this pool, at the ledger's time."""
        return cleanup_expired_sessions(self.pool, now or self.now())


def cleanup_expired_sessions(pool: ConnectionPool, now: datetime | None = None) -> tuple[int, int]:
    """For the sweeper (a chore: ``functools.partial(cleanup_expired_sessions, pool)``): delete the
    stock holds that ended (their TTL, or their session's, passed; or their session completed) and
    mark the open sessions that expired as expired. Returns (holds deleted, sessions marked).
    Neither changes what counts: an ended hold stopped counting at its expiry already, and an
    expired session's coupon hold ends in the ledger at the same moment (the sweeper records it)."""
    now = now or datetime.now(UTC)
    with pool.connection() as conn, conn.transaction():
        holds = conn.execute(
            "DELETE FROM inventory_holds h USING checkout_sessions s"
            " WHERE s.retailer_id = h.retailer_id AND s.id = h.session_id"
            " AND (h.expires_at <= %s OR s.expires_at <= %s OR s.status <> 'open')",
            (now, now),
        ).rowcount
        sessions = conn.execute(
            "UPDATE checkout_sessions SET status = 'expired' WHERE status = 'open' AND expires_at <= %s", (now,)
        ).rowcount
    return holds, sessions


async def retrying(step: Callable[[], Awaitable[T]]) -> T:
    """Run ``step`` until it does not meet a concurrent change of the session (a few times)."""
    for attempt in range(ATTEMPTS):
        try:
            return await step()
        except SessionChanged:
            await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))  # apart from the others retrying
    raise busy()


def busy() -> ApiError:
    return ApiError(
        "SERVICE_UNAVAILABLE", "The session is being changed by other requests; retry shortly.", retry_after=1
    )
