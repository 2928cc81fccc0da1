"""Checkout sessions (seed 004's cart-summary, validate-coupon, remove-coupon, hold-inventory).

A session is a cart the server priced from the retailer's ``products`` (the prices are those of
its last sync: what the shopper was shown is what the order costs), at most one coupon held for it
(a ledger reservation: one use, counted against every limit until the session ends), and stock
held for its items (``inventory_holds``). Every change to the cart or its coupon moves its expiry
to ``ttl_seconds`` from now; holding stock does not. It is sealed: a publishable-key caller opens
it only with its client secret (api/shop/shoppers.py); to anyone else it is missing.

Concurrency. The coupon changes are ledger commands (reserve, release) run ``InTransaction`` with
the update of the session row, under an optimistic check of the session's ``version``: of two
concurrent calls on one session, the second's update finds another version, its command is
refused (nothing saved), and it starts again from the session as the first left it. A call
answers only once the row change it reports committed. A request thread never holds a session's
(or a product's) row lock while it waits for the ledger writer: the writer's transaction may need
those rows. Stock holds lock the products' rows (in id order) for the check, so two sessions never
hold the same unit: available = stock - live holds of the other sessions.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from psycopg import Connection
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from api.shop.errors import SessionChanged, ShopError, busy, invalid, out_of_stock, session_not_found
from api.shop.records import (
    ZERO,
    HeldStock,
    Line,
    NewSession,
    Session,
    SessionCoupon,
    cleanup_expired_sessions,
    hash_secret,
    new_client_secret,
    new_session_id,
    read_session,
    save_cart,
    save_coupon,
)
from api.shop.shoppers import RETAILER, HoldCap, Shopper
from api.shop.stock import DROP_HOLDS, OWN_HOLDS, lock_available
from ledger.application import CouponLedger
from ledger.commands import Hold, InTransaction, Release, Reserve
from ledger.domain import Order
from ledger.errors import LedgerError, refusal_codes
from ledger.money import MAX_AMOUNT, format_amount

T = TypeVar("T")
DEFAULT_SESSION_TTL = 30 * 60
DEFAULT_MAX_HOLDS = 5
MAX_UNITS = 10_000  # of one product in a cart
ATTEMPTS = 8  # optimistic retries of a change that met a concurrent one
# The ledger's refusals that mean "this coupon does not apply to this cart (any more)".
COUPON_REFUSALS = frozenset(refusal_codes())


@dataclass(frozen=True)
class CouponRemoved:
    """The coupon a sync dropped, and the ledger's refusal that says why."""

    code: str
    error: LedgerError


@dataclass(frozen=True)
class Synced:
    """A synced session; ``client_secret`` only when this sync created it (shown only then)."""

    session: Session
    created: bool
    coupon_removed: CouponRemoved | None
    client_secret: str | None = None


class Sessions:
    def __init__(
        self, pool: ConnectionPool, ledger: CouponLedger, ttl_seconds: int, max_holds: int = DEFAULT_MAX_HOLDS
    ) -> None:
        self.pool = pool
        self.ledger = ledger
        self.ttl_seconds = ttl_seconds
        self.cap = HoldCap(max_holds)

    def now(self) -> datetime:
        return self.ledger.clock()

    # --- reads ------------------------------------------------------------------------------------

    def get(self, retailer_id: UUID, session_id: str, shopper: Shopper = RETAILER) -> Session:
        """The session with its live stock hold; NOT_FOUND if it is not this retailer's, or sealed
        against ``shopper``."""
        now = self.now()
        with self.pool.connection() as conn:
            session = opened(read_session(conn, retailer_id, session_id), session_id, shopper)
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

    def find(self, retailer_id: UUID, session_id: str, shopper: Shopper = RETAILER) -> Session:
        """The session as stored (without its stock hold); NOT_FOUND as for ``get``."""
        return opened(self._read(retailer_id, session_id), session_id, shopper)

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
            raise ShopError("NOT_FOUND", f"No product {names} in this store.", product_ids=missing)
        too_many = [pid for pid, quantity in wanted.items() if quantity > MAX_UNITS]
        if too_many:
            raise invalid("items", f"product {too_many[0]}: at most {MAX_UNITS} units in all")
        lines = tuple(Line(pid, products[pid][0], quantity, products[pid][1]) for pid, quantity in wanted.items())
        subtotal = sum((line.total for line in lines), ZERO)
        if subtotal > MAX_AMOUNT:
            raise invalid("items", f"the cart's subtotal {subtotal} would exceed {MAX_AMOUNT}")
        return lines, subtotal

    def _in_transaction(self, work: Callable[[Connection[Any]], T]) -> T:
        with self.pool.connection() as conn, conn.transaction():
            return work(conn)

    # --- commands -----------------------------------------------------------------------------------

    async def sync(
        self,
        retailer_id: UUID,
        session_id: str | None,
        items: Sequence[tuple[int, int]],
        subtotal: Decimal | None,
        shopper: Shopper = RETAILER,
    ) -> Synced:
        """Create the session (with a new client secret), or re-sync its cart: priced again, its
        stock holds released, its coupon held again at the new price (or dropped, saying why, if
        it no longer applies). An existing session sealed against ``shopper`` is NOT_FOUND."""
        lines, priced = await run_in_threadpool(self._price, retailer_id, items)
        if subtotal is not None and subtotal != priced:
            raise ShopError(
                "SUBTOTAL_MISMATCH",
                f"The subtotal {format_amount(subtotal)} differs from the cart's {format_amount(priced)}"
                " (priced from the store's products).",
                subtotal=format_amount(subtotal),
                items_subtotal=format_amount(priced),
            )
        sid = session_id or new_session_id()
        client_secret = new_client_secret(sid)
        return await retrying(lambda: self._sync_once(retailer_id, sid, lines, priced, shopper, client_secret))

    async def _sync_once(
        self,
        retailer_id: UUID,
        session_id: str,
        lines: tuple[Line, ...],
        subtotal: Decimal,
        shopper: Shopper,
        client_secret: str,
    ) -> Synced:
        current = await run_in_threadpool(self._read, retailer_id, session_id)
        if current is None:
            new = NewSession(hash_secret(client_secret), shopper.holder_address)
            await self._save_synced(retailer_id, session_id, new, lines, subtotal)
            session = await run_in_threadpool(self.get, retailer_id, session_id)
            return Synced(session, True, None, client_secret)
        opened(current, session_id, shopper)
        if current.stored_status == "completed":
            current.check_open(self.now())  # SESSION_COMPLETED
        removed = await self._save_synced(retailer_id, session_id, current, lines, subtotal)
        session = await run_in_threadpool(self.get, retailer_id, session_id)
        return Synced(session, False, removed)

    async def _save_synced(
        self,
        retailer_id: UUID,
        session_id: str,
        current: Session | NewSession,
        lines: tuple[Line, ...],
        subtotal: Decimal,
    ) -> CouponRemoved | None:
        now = self.now()
        expires_at = now + timedelta(seconds=self.ttl_seconds)
        coupon = current.coupon if isinstance(current, Session) else None

        def save_cart_alone(conn: Connection[Any]) -> None:
            save_cart(conn, retailer_id, session_id, current, lines, subtotal, None, now, expires_at)

        if coupon is None:
            await run_in_threadpool(self._in_transaction, save_cart_alone)
            return None
        customer_id = coupon.customer_id

        def save_with_hold(conn: Connection[Any], hold: Hold) -> None:
            held = SessionCoupon.of(hold, customer_id)
            save_cart(conn, retailer_id, session_id, current, lines, subtotal, held, now, hold.expires_at)

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
        await self._release(retailer_id, coupon.reservation_id, save_cart_alone)
        return CouponRemoved(coupon.code, refusal)

    async def _release(self, retailer_id: UUID, reservation_id: UUID, save: Callable[[Connection[Any]], None]) -> None:
        """Release the hold and run ``save`` in the transaction that records it (a hold that had
        already ended gives the ledger nothing to record: ``save`` still runs in the writer's
        transaction). Returns once ``save`` committed; SessionChanged if it found the session moved."""
        try:
            await self.ledger.execute_async(
                InTransaction(Release(retailer_id, reservation_id), lambda conn, ended: save(conn))
            )
        except LedgerError as error:
            # Confirmed or missing: nothing of the session's to release any more.
            if error.code not in ("INVALID_TRANSITION", "RESERVATION_NOT_FOUND"):
                raise
            await run_in_threadpool(self._in_transaction, save)

    async def apply_coupon(
        self, retailer_id: UUID, session_id: str, code: str, customer_id: str | None, shopper: Shopper = RETAILER
    ) -> Session:
        """Validate the coupon against the session's cart and hold one use until the session
        expires, in place of the session's previous coupon (released in the same save). A
        refused coupon changes nothing: the previous one stays. A publishable-key caller past its
        cap of sessions holding something is RATE_LIMITED."""
        await retrying(lambda: self._apply_coupon_once(retailer_id, session_id, code, customer_id, shopper))
        return await run_in_threadpool(self.get, retailer_id, session_id)

    async def _apply_coupon_once(
        self, retailer_id: UUID, session_id: str, code: str, customer_id: str | None, shopper: Shopper
    ) -> None:
        session = await run_in_threadpool(self.find, retailer_id, session_id, shopper)
        now = self.now()
        session.check_open(now)

        def save(conn: Connection[Any], hold: Hold) -> None:
            # Counted in the transaction that saves the hold, under the shoppers' locks.
            self.cap.check(conn, retailer_id, session_id, shopper, customer_id, now, locked=True)
            coupon = SessionCoupon.of(hold, customer_id)
            save_coupon(conn, session, coupon, now, hold.expires_at, shopper.holder_address)

        reserve = Reserve(
            retailer_id,
            code,
            Order.of(session.subtotal, session.items()),
            customer_id=customer_id,
            ttl_seconds=self.ttl_seconds,
            release=session.coupon.reservation_id if session.coupon is not None else None,
        )
        locks = self.cap.locks(retailer_id, shopper, customer_id)
        await self.ledger.execute_async(InTransaction(reserve, save, locks=locks))

    async def remove_coupon(self, retailer_id: UUID, session_id: str, shopper: Shopper = RETAILER) -> Session:
        """Release the session's coupon hold; without one, nothing changes."""
        await retrying(lambda: self._remove_coupon_once(retailer_id, session_id, shopper))
        return await run_in_threadpool(self.get, retailer_id, session_id)

    async def _remove_coupon_once(self, retailer_id: UUID, session_id: str, shopper: Shopper) -> None:
        session = await run_in_threadpool(self.find, retailer_id, session_id, shopper)
        now = self.now()
        session.check_open(now)
        if session.coupon is None:
            return
        expires_at = now + timedelta(seconds=self.ttl_seconds)
        await self._release(
            retailer_id,
            session.coupon.reservation_id,
            lambda conn: save_coupon(conn, session, None, now, expires_at),
        )

    def hold_inventory(
        self, retailer_id: UUID, session_id: str, ttl_seconds: int | None, shopper: Shopper = RETAILER
    ) -> Session:
        """Hold stock for every item of the session, all or nothing, in place of its previous
        hold; until ``ttl_seconds`` from now, at most until the session expires. A
        publishable-key caller past its cap of sessions holding something is RATE_LIMITED."""
        now = self.now()
        with self.pool.connection() as conn, conn.transaction():
            session = opened(read_session(conn, retailer_id, session_id, lock=True), session_id, shopper)
            session.check_open(now)
            expires_at = session.expires_at
            if ttl_seconds is not None:
                expires_at = min(expires_at, now + timedelta(seconds=ttl_seconds))
            _, shortages = lock_available(conn, retailer_id, session_id, session.wanted, now)
            if shortages:
                raise out_of_stock(shortages)
            self.cap.check(conn, retailer_id, session_id, shopper, None, now)
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
                if shopper.holder_address is not None:
                    cur.execute(
                        "UPDATE checkout_sessions SET holder_address = %s WHERE retailer_id = %s AND id = %s",
                        (shopper.holder_address, retailer_id, session_id),
                    )
        return self.get(retailer_id, session_id)

    def cleanup(self, now: datetime | None = None) -> tuple[int, int]:
        """cleanup_expired_sessions on this pool, at the ledger's time."""
        return cleanup_expired_sessions(self.pool, now or self.now())


def opened(session: Session | None, session_id: str, shopper: Shopper) -> Session:
    """The session if ``shopper`` may open it; else NOT_FOUND, exactly as for a missing one."""
    if session is None or (shopper.publishable and not session.is_opened_by(shopper.client_secret)):
        raise session_not_found(session_id)
    return session


async def retrying(step: Callable[[], Awaitable[T]]) -> T:
    """Run ``step`` until it does not meet a concurrent change of the session (a few times)."""
    for attempt in range(ATTEMPTS):
        try:
            return await step()
        except SessionChanged:
            await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))  # apart from the others retrying
    raise busy()
