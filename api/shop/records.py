"""A checkout session as stored in ``checkout_sessions``: its priced lines, the coupon held for it,
its optimistic ``version``, and its seal (the hash of the client secret given to its creator).
Reading and writing a session row, in the transaction of the connection given."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from api.shop.errors import SessionChanged, session_completed, session_expired
from api.shop.stock import DROP_HOLDS
from ledger.commands import Hold
from ledger.domain import Item
from ledger.metrics import metrics
from ledger.money import CENT, format_amount

ZERO = Decimal("0.00")
CLIENT_SECRET_PREFIX = "_secret_"
COLUMNS = (
    "id, items, subtotal, coupon_code, customer_id, reservation_id, discount_amount, free_shipping,"
    " status, order_id, version, created_at, updated_at, expires_at, client_secret_hash"
)
READ = f"SELECT {COLUMNS} FROM checkout_sessions WHERE retailer_id = %s AND id = %s"


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

    def values(self) -> tuple[Any, ...]:
        return (self.code, self.customer_id, self.reservation_id, self.discount_amount, self.free_shipping)


NO_COUPON = (None, None, None, None, None)


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
    client_secret_hash: str | None = None
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
            raise session_completed(self.id, self.order_id)
        if now >= self.expires_at:
            raise session_expired(self.id, self.expires_at)

    def is_opened_by(self, client_secret: str | None) -> bool:
        """Whether ``client_secret`` is this session's (a session without one opens to none)."""
        if client_secret is None or self.client_secret_hash is None:
            return False
        return hmac.compare_digest(hash_secret(client_secret), self.client_secret_hash)


def new_session_id() -> str:
    return "cs_" + secrets.token_urlsafe(18)


def new_client_secret(session_id: str) -> str:
    """What the session's creator gets to open it from a web page: ``{id}_secret_{random}``."""
    return f"{session_id}{CLIENT_SECRET_PREFIX}{secrets.token_urlsafe(24)}"


def hash_secret(client_secret: str) -> str:
    return hashlib.sha256(client_secret.encode("utf-8", "surrogatepass")).hexdigest()


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
        client_secret_hash=row["client_secret_hash"],
    )


@dataclass(frozen=True)
class NewSession:
    """A session to create: the hash of its client secret, and the address of a publishable-key
    creator (whose holds are counted against that address)."""

    client_secret_hash: str
    holder_address: str | None


def save_cart(
    conn: Connection[Any],
    retailer_id: UUID,
    session_id: str,
    current: Session | NewSession,
    lines: Sequence[Line],
    subtotal: Decimal,
    coupon: SessionCoupon | None,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Write the synced cart (and its coupon) and drop the session's stock holds; SessionChanged
    if the session is not as it was read (or, new, was created meanwhile)."""
    items = Jsonb([line.as_json() for line in lines])
    coupon_values = coupon.values() if coupon is not None else NO_COUPON
    if isinstance(current, NewSession):
        cursor = conn.execute(
            "INSERT INTO checkout_sessions (retailer_id, id, items, subtotal, coupon_code, customer_id,"
            " reservation_id, discount_amount, free_shipping, status, version, created_at, updated_at, expires_at,"
            " client_secret_hash, holder_address)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'open', 1, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                retailer_id,
                session_id,
                items,
                subtotal,
                *coupon_values,
                now,
                now,
                expires_at,
                current.client_secret_hash,
                current.holder_address,
            ),
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


def save_coupon(
    conn: Connection[Any],
    session: Session,
    coupon: SessionCoupon | None,
    now: datetime,
    expires_at: datetime,
    holder_address: str | None = None,
) -> None:
    """Set (or clear) the session's coupon (and, given, the address holding it); SessionChanged
    unless the session is as it was read and still open."""
    values = coupon.values() if coupon is not None else NO_COUPON
    cursor = conn.execute(
        "UPDATE checkout_sessions SET coupon_code = %s, customer_id = %s, reservation_id = %s,"
        " discount_amount = %s, free_shipping = %s, version = version + 1, updated_at = %s, expires_at = %s,"
        " holder_address = COALESCE(%s, holder_address)"
        " WHERE retailer_id = %s AND id = %s AND version = %s AND status = 'open' AND expires_at > %s",
        (*values, now, expires_at, holder_address, session.retailer_id, session.id, session.version, now),
    )
    if cursor.rowcount != 1:
        raise SessionChanged(session.id)


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
    if (m := metrics()) is not None:
        m.stock_holds_deleted.inc(max(holds, 0))
        m.sessions_ended.inc(max(sessions, 0))
    return holds, sessions
