"""The ledger's commands, as values, and what each answers.

A command says what a caller wants; its handler (ledger/handlers.py) decides it against the
aggregates of the writer's batch. A caller gets only what the attempt that committed produced:
``CouponLedger.execute(command)`` answers the command's result, or raises its refusal.

``InTransaction(command, work)`` runs ``work(connection, result)`` in the transaction that stores
the command's events (on PostgreSQL), also when the command has no events to store (a replay, a
hold already ended), and answers what ``work`` returned in the transaction that committed: never a
value built in an attempt that was rolled back and decided again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar
from uuid import UUID

from ledger.domain import (
    DEFAULT_HOLD_SECONDS,
    UNSET,
    Campaign,
    Coupon,
    Order,
    Quote,
    Redemption,
    Reservation,
    Unset,
)

T = TypeVar("T")
R = TypeVar("R")


class Command(Generic[T]):
    """A request to change the ledger that answers a ``T``."""


@dataclass(frozen=True)
class Receipt:
    """A redemption: made now, or found already made by an earlier request (``replayed``)."""

    redemption_id: UUID
    quote: Quote
    replayed: bool


@dataclass(frozen=True)
class Hold:
    """A held use: its price, until when, and whether an earlier request made it."""

    reservation_id: UUID
    quote: Quote
    expires_at: datetime
    replayed: bool


@dataclass(frozen=True)
class HoldEnded:
    """A released hold: how it ended (released, or expired if its time had passed), and whether an
    earlier request had ended it already."""

    reservation: Reservation
    status: str
    already: bool


@dataclass(frozen=True)
class Reversal:
    """A reversed redemption, and whether an earlier request reversed it."""

    redemption: Redemption
    already_reversed: bool


@dataclass(frozen=True)
class CreateCoupon(Command[Coupon]):
    """``fields``: the coupon's terms but its code (ledger.handlers.COUPON_FIELDS)."""

    retailer_id: UUID
    code: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class UpdateCoupon(Command[Coupon]):
    """PATCH: change the mutable terms (``None`` removes one); FIELD_IMMUTABLE for the others."""

    retailer_id: UUID
    code: str
    changes: Mapping[str, Any]


@dataclass(frozen=True)
class Deactivate(Command[Coupon]):
    retailer_id: UUID
    code: str


@dataclass(frozen=True)
class Activate(Command[Coupon]):
    """Activate (repeating is harmless), with a new expiry when one is sent."""

    retailer_id: UUID
    code: str
    expires_at: datetime | Unset | None = UNSET


@dataclass(frozen=True)
class Transition(Command[Coupon]):
    """One of the platform's state-machine events; INVALID_TRANSITION where it has no arrow."""

    retailer_id: UUID
    code: str
    event: str
    expires_at: datetime | Unset | None = UNSET


@dataclass(frozen=True)
class Archive(Command[Coupon]):
    """Retire a coupon: COUPON_NOT_FOUND from now on; its events stay, its code stays taken."""

    retailer_id: UUID
    code: str


@dataclass(frozen=True)
class Redeem(Command[Receipt]):
    """Redeem a coupon for an order. ``idempotency_key``: a client's key (replays the first
    redemption); ``order_key``: the checkout's own key (the order id), kept apart from clients' keys."""

    retailer_id: UUID
    code: str
    order: Order
    idempotency_key: str | None = None
    order_id: str | None = None
    customer_id: str | None = None
    order_key: str | None = None


@dataclass(frozen=True)
class Reserve(Command[Hold]):
    """Hold one use for ``ttl_seconds``: checked like a redemption, counted like a use until it is
    confirmed, released or expires. ``release``: a hold to end in the same save."""

    retailer_id: UUID
    code: str
    order: Order
    idempotency_key: str | None = None
    order_id: str | None = None
    customer_id: str | None = None
    ttl_seconds: int = DEFAULT_HOLD_SECONDS
    release: UUID | None = None


@dataclass(frozen=True)
class Confirm(Command[Receipt]):
    """Turn a live hold into a redemption at the price it was held at; again: the same one."""

    retailer_id: UUID
    reservation_id: UUID
    order_id: str | None = None


@dataclass(frozen=True)
class Release(Command[HoldEnded]):
    """Give a held use back; a hold already past its time is recorded as expired instead."""

    retailer_id: UUID
    reservation_id: UUID


@dataclass(frozen=True)
class ExpireHolds(Command[int]):
    """Record the expiry of each of these holds that is still held and past its time (the
    sweeper's); answers how many it recorded."""

    reservation_ids: Sequence[UUID]


@dataclass(frozen=True)
class Reverse(Command[Reversal]):
    """Give a redemption's use back (to its coupon, customer and campaign), once."""

    retailer_id: UUID
    redemption_id: UUID
    reason: str | None = None


@dataclass(frozen=True)
class StartCampaign(Command[Campaign]):
    campaign_id: UUID
    retailer_id: UUID
    name: str
    prefix: str
    count: int
    template: Mapping[str, Any]
    max_redemptions: int | None = None
    max_discount_total: Decimal | None = None


@dataclass(frozen=True)
class GenerateCodes(Command[Campaign]):
    """Add these codes to the campaign (a code found taken is drawn again with ``draw``)."""

    retailer_id: UUID
    campaign_id: UUID
    codes: Sequence[str]
    template: Mapping[str, Any]
    draw: Callable[[], str] = field(compare=False)


@dataclass(frozen=True)
class InTransaction(Command[R], Generic[T, R]):
    """``command``, with ``work(connection, result)`` run in the transaction that commits it; answers
    what ``work`` returned there. Work that raises refuses the command alone, with that error."""

    command: Command[T]
    work: Callable[[Any, T], R]
    locks: tuple[Any, ...] = ()  # rows ``work`` will lock: taken for the whole batch at once, in order
