"""CouponLedger: the application service. Each command is get -> change -> save(), decided by
the process's one BatchWriter (ledger/writer.py), which saves a whole batch of commands at once.

Concurrency is optimistic: every event carries the aggregate's next version and the store's
primary key (originator_id, originator_version) admits only one writer of each version. Inside a
process the writer decides commands one after another, so they never race; a save that loses to
another process is re-read, re-checked and saved again by the writer, so a coupon can never be
redeemed past its limit, whatever runs in parallel.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import DomainEvent, DomainEventProtocol, MutableOrImmutableAggregate
from eventsourcing.persistence import Recording, Transcoder

from ledger.domain import (
    DEFAULT_HOLD_SECONDS,
    FREE_SHIPPING,
    MAX_HOLD_SECONDS,
    RESERVATION_CONFIRMED,
    RESERVATION_EXPIRED,
    RESERVATION_RELEASED,
    UNSET,
    ZERO,
    Campaign,
    Coupon,
    CustomerUsage,
    Item,
    Order,
    Quote,
    Redemption,
    Reservation,
    Scope,
    Unset,
    as_order,
    ascii_upper,
    check_customer_id,
    check_discount,
    check_terms,
    confirmed_redemption_id_for,
    coupon_id_for,
    customer_usage_id_for,
    generate_code,
    normalize_code,
    normalize_prefix,
    redemption_id_for,
    reservation_id_for,
)
from ledger.errors import (
    CampaignNotFound,
    CouponCodeTaken,
    CouponNotFound,
    IdempotencyKeyReused,
    InvalidCoupon,
    InvalidTransition,
    RedemptionNotFound,
    ReservationExpired,
    ReservationNotFound,
)
from ledger.event_store import LedgerTranscoder
from ledger.timestamps import format_timestamp
from ledger.writer import Batch, BatchWriter

SNAPSHOT_INTERVAL = 100  # measured with bench/capacity.py: see README, Performance
# The idempotency key of a coupon redeemed at checkout: this prefix and the order id.
CHECKOUT_KEY_PREFIX = "order:"
# A redemption's request, as the fingerprint hashes it: keys sorted (one encoder, not one a call).
FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True)
# A campaign generates at most this many codes, this many per save.
MAX_CAMPAIGN_CODES = 100_000
CAMPAIGN_CHUNK = 1_000
# Every field of a new coupon but its code, with its default.
COUPON_FIELDS: dict[str, Any] = {
    "discount_type": None,
    "discount_value": None,
    "min_order_value": None,
    "starts_at": None,
    "expires_at": None,
    "max_uses": None,
    "max_uses_per_customer": None,
    "max_discount_amount": None,
    "scope": None,
    "public": False,
    "is_active": True,
}
A = TypeVar("A")
EVENT_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Receipt:
    """The outcome of an apply: the redemption and whether it was recorded by an earlier request."""

    redemption_id: UUID
    quote: Quote
    replayed: bool


@dataclass(frozen=True)
class Hold:
    """The outcome of a reserve: the hold, its price, until when, and whether an earlier request made it."""

    reservation_id: UUID
    quote: Quote
    expires_at: datetime
    replayed: bool


@dataclass(frozen=True)
class Release:
    """The outcome of a release: the reservation, how it ended (released, or expired if its TTL had
    passed), and whether an earlier request ended it."""

    reservation: Reservation
    status: str
    already: bool


@dataclass(frozen=True)
class Reversal:
    """The outcome of a reverse: the redemption, and whether an earlier request reversed it."""

    redemption: Redemption
    already_reversed: bool


@dataclass(frozen=True)
class RecordedEvent:
    version: int
    type: str
    occurred_at: datetime
    data: dict[str, Any]


class CouponLedger(Application[UUID]):
    name = "Ledger"
    env = {"AGGREGATE_CACHE_MAXSIZE": "10000"}
    snapshotting_intervals = {Coupon: SNAPSHOT_INTERVAL, CustomerUsage: SNAPSHOT_INTERVAL, Campaign: SNAPSHOT_INTERVAL}

    def __init__(self, env: dict[str, str] | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(env)
        self.clock = clock
        self.writer = BatchWriter(self, cached_types=(Coupon, CustomerUsage, Campaign, Reservation))

    def construct_transcoder(self) -> Transcoder:
        transcoder = LedgerTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def save(
        self, *objs: MutableOrImmutableAggregate[UUID] | DomainEventProtocol[UUID] | None, **kwargs: Any
    ) -> list[Recording[UUID]]:
        """The library's save(), telling events from aggregates by class: its check of every
        object against a runtime protocol cost more CPU than writing the event."""
        processing_event = ProcessingEvent[UUID]()
        for obj in objs:
            if isinstance(obj, DomainEvent):
                processing_event.events.append(obj)
            elif obj is not None:
                processing_event.collect_events(obj)
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        return recordings

    @property
    def version_conflicts(self) -> int:
        """Saves the store rejected because another process wrote the same aggregate first."""
        return self.writer.stats.conflicts

    def close(self) -> None:
        self.writer.close()
        super().close()

    # --- commands: each is decided by the writer against the batch's aggregates ------------------
    # Every command comes in two forms: blocking (CLI, tests, threads) and awaited (the HTTP API,
    # which then holds no thread while the batch is written).

    def create_coupon(
        self,
        retailer_id: UUID,
        code: str,
        discount_type: str,
        discount_value: Decimal,
        min_order_value: Decimal | None = None,
        expires_at: datetime | None = None,
        max_uses: int | None = None,
        is_active: bool = True,
        **terms: Any,
    ) -> Coupon:
        """Create a coupon. ``terms``: starts_at, max_uses_per_customer, max_discount_amount,
        scope, public (see Coupon)."""
        command = self._create_coupon(
            retailer_id, code, discount_type, discount_value, min_order_value, expires_at, max_uses, is_active, terms
        )
        return self.writer.execute(*command)

    async def create_coupon_async(
        self,
        retailer_id: UUID,
        code: str,
        discount_type: str,
        discount_value: Decimal,
        min_order_value: Decimal | None = None,
        expires_at: datetime | None = None,
        max_uses: int | None = None,
        is_active: bool = True,
        **terms: Any,
    ) -> Coupon:
        command = self._create_coupon(
            retailer_id, code, discount_type, discount_value, min_order_value, expires_at, max_uses, is_active, terms
        )
        return await self.writer.execute_async(*command)

    def update_coupon(self, retailer_id: UUID, code: str, changes: Mapping[str, Any]) -> Coupon:
        """PATCH: change the mutable terms (``None`` removes one); FIELD_IMMUTABLE for the others."""
        return self.writer.execute(*self._change(retailer_id, code, lambda c, now: c.update(changes)))

    async def update_coupon_async(self, retailer_id: UUID, code: str, changes: Mapping[str, Any]) -> Coupon:
        return await self.writer.execute_async(*self._change(retailer_id, code, lambda c, now: c.update(changes)))

    def deactivate(self, retailer_id: UUID, code: str) -> Coupon:
        return self.writer.execute(*self._change(retailer_id, code, _deactivate))

    async def deactivate_async(self, retailer_id: UUID, code: str) -> Coupon:
        return await self.writer.execute_async(*self._change(retailer_id, code, _deactivate))

    def activate(self, retailer_id: UUID, code: str, expires_at: datetime | Unset | None = UNSET) -> Coupon:
        """Activate (repeating is harmless), with a new expiry when one is sent."""
        return self.writer.execute(*self._change(retailer_id, code, lambda c, now: c.set_active(now, expires_at)))

    async def activate_async(self, retailer_id: UUID, code: str, expires_at: datetime | Unset | None = UNSET) -> Coupon:
        change = self._change(retailer_id, code, lambda c, now: c.set_active(now, expires_at))
        return await self.writer.execute_async(*change)

    def transition(
        self, retailer_id: UUID, code: str, event: str, expires_at: datetime | Unset | None = UNSET
    ) -> Coupon:
        """One of the platform's state-machine events; INVALID_TRANSITION where the diagram has no arrow."""
        change = self._change(retailer_id, code, lambda c, now: c.transition(event, now, expires_at))
        return self.writer.execute(*change)

    async def transition_async(
        self, retailer_id: UUID, code: str, event: str, expires_at: datetime | Unset | None = UNSET
    ) -> Coupon:
        change = self._change(retailer_id, code, lambda c, now: c.transition(event, now, expires_at))
        return await self.writer.execute_async(*change)

    def archive(self, retailer_id: UUID, code: str) -> Coupon:
        """Retire a coupon: COUPON_NOT_FOUND for it from now on; its events stay, its code stays taken."""
        return self.writer.execute(*self._change(retailer_id, code, _archive))

    async def archive_async(self, retailer_id: UUID, code: str) -> Coupon:
        return await self.writer.execute_async(*self._change(retailer_id, code, _archive))

    def apply(
        self,
        retailer_id: UUID,
        code: str,
        subtotal: Decimal | None,
        idempotency_key: str | None = None,
        order_id: str | None = None,
        also: Callable[[Any, Receipt], None] | None = None,
        items: Sequence[Item] | None = None,
        shipping_amount: Decimal | None = None,
        customer_id: str | None = None,
    ) -> Receipt:
        """Redeem. ``also(connection, receipt)``, if given, runs in the transaction that saves the
        redemption (PostgreSQL only): both are stored, or neither, and its error is the caller's.
        A replayed redemption does not run it again."""
        order = Order.of(subtotal, items, shipping_amount)
        command = self._apply(retailer_id, code, order, idempotency_key, order_id, customer_id, also)
        return self.writer.execute(*command)

    async def apply_async(
        self,
        retailer_id: UUID,
        code: str,
        subtotal: Decimal | None,
        idempotency_key: str | None = None,
        order_id: str | None = None,
        items: Sequence[Item] | None = None,
        shipping_amount: Decimal | None = None,
        customer_id: str | None = None,
    ) -> Receipt:
        order = Order.of(subtotal, items, shipping_amount)
        command = self._apply(retailer_id, code, order, idempotency_key, order_id, customer_id)
        return await self.writer.execute_async(*command)

    def reserve(
        self,
        retailer_id: UUID,
        code: str,
        subtotal: Decimal | None,
        idempotency_key: str | None = None,
        order_id: str | None = None,
        items: Sequence[Item] | None = None,
        shipping_amount: Decimal | None = None,
        customer_id: str | None = None,
        ttl_seconds: int = DEFAULT_HOLD_SECONDS,
        release: UUID | None = None,
        also: Callable[[Any, Hold], None] | None = None,
    ) -> Hold:
        """Hold one use for ``ttl_seconds``: checked like apply, counted like a use until it is
        confirmed, released or expires. ``release``: a hold to end in the same save (a checkout
        session changing its coupon). ``also(connection, hold)`` as for apply."""
        order = Order.of(subtotal, items, shipping_amount)
        command = self._reserve(
            retailer_id, code, order, idempotency_key, order_id, customer_id, ttl_seconds, release, also
        )
        return self.writer.execute(*command)

    async def reserve_async(
        self,
        retailer_id: UUID,
        code: str,
        subtotal: Decimal | None,
        idempotency_key: str | None = None,
        order_id: str | None = None,
        items: Sequence[Item] | None = None,
        shipping_amount: Decimal | None = None,
        customer_id: str | None = None,
        ttl_seconds: int = DEFAULT_HOLD_SECONDS,
        release: UUID | None = None,
        also: Callable[[Any, Hold], None] | None = None,
    ) -> Hold:
        order = Order.of(subtotal, items, shipping_amount)
        command = self._reserve(
            retailer_id, code, order, idempotency_key, order_id, customer_id, ttl_seconds, release, also
        )
        return await self.writer.execute_async(*command)

    def confirm(
        self,
        retailer_id: UUID,
        reservation_id: UUID,
        order_id: str | None = None,
        also: Callable[[Any, Receipt], None] | None = None,
    ) -> Receipt:
        """Turn a live hold into a redemption at the price it was held at; again: the same one."""
        return self.writer.execute(*self._confirm(retailer_id, reservation_id, order_id, also))

    async def confirm_async(
        self,
        retailer_id: UUID,
        reservation_id: UUID,
        order_id: str | None = None,
        also: Callable[[Any, Receipt], None] | None = None,
    ) -> Receipt:
        return await self.writer.execute_async(*self._confirm(retailer_id, reservation_id, order_id, also))

    def release(
        self, retailer_id: UUID, reservation_id: UUID, also: Callable[[Any, Release], None] | None = None
    ) -> Release:
        """Give a held use back; a hold already past its TTL is recorded as expired instead."""
        return self.writer.execute(*self._release(retailer_id, reservation_id, also))

    async def release_async(
        self, retailer_id: UUID, reservation_id: UUID, also: Callable[[Any, Release], None] | None = None
    ) -> Release:
        return await self.writer.execute_async(*self._release(retailer_id, reservation_id, also))

    def expire_reservations(self, reservation_ids: Sequence[UUID]) -> int:
        """Record the expiry of each of these holds that is still held and past its TTL (for the
        sweeper); the others are left alone. Returns how many expiries it recorded."""
        return self.writer.execute(*self._expire(reservation_ids))

    def reverse(self, retailer_id: UUID, redemption_id: UUID, reason: str | None = None) -> Reversal:
        """Give a redemption's use back (to its coupon, its customer and its campaign), once;
        reversing it again changes nothing and says so."""
        return self.writer.execute(*self._reverse(retailer_id, redemption_id, reason))

    async def reverse_async(self, retailer_id: UUID, redemption_id: UUID, reason: str | None = None) -> Reversal:
        return await self.writer.execute_async(*self._reverse(retailer_id, redemption_id, reason))

    def create_campaign(
        self,
        retailer_id: UUID,
        name: str,
        prefix: str,
        count: int,
        template: Mapping[str, Any],
        max_redemptions: int | None = None,
        max_discount_total: Decimal | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Campaign:
        """Create a campaign and generate its ``count`` codes, CAMPAIGN_CHUNK coupons per save;
        ``progress(n)`` after each save with the number of codes it added."""
        plan = self._plan_campaign(retailer_id, name, prefix, count, template, max_redemptions, max_discount_total)
        campaign: Campaign = self.writer.execute(*plan.start())
        for size in plan.chunks():
            campaign = self.writer.execute(*plan.generate(size))
            if progress is not None:
                progress(size)
        return campaign

    async def create_campaign_async(
        self,
        retailer_id: UUID,
        name: str,
        prefix: str,
        count: int,
        template: Mapping[str, Any],
        max_redemptions: int | None = None,
        max_discount_total: Decimal | None = None,
    ) -> Campaign:
        plan = self._plan_campaign(retailer_id, name, prefix, count, template, max_redemptions, max_discount_total)
        campaign: Campaign = await self.writer.execute_async(*plan.start())
        for size in plan.chunks():
            campaign = await self.writer.execute_async(*plan.generate(size))
        return campaign

    # --- queries: read the store directly -------------------------------------------------------

    def get_coupon(self, retailer_id: UUID, code: str, archived: bool = False) -> Coupon:
        """The coupon; COUPON_NOT_FOUND if it does not exist or (unless ``archived``) was archived."""
        code = self._lookup_code(code)
        coupon = self._get(coupon_id_for(retailer_id, code), Coupon)
        if coupon is None or (coupon.archived and not archived):
            raise CouponNotFound(f"Coupon {code} does not exist.", code=code)
        return coupon

    def validate(
        self,
        retailer_id: UUID,
        code: str,
        subtotal: Decimal | None,
        items: Sequence[Item] | None = None,
        shipping_amount: Decimal | None = None,
        customer_id: str | None = None,
    ) -> Quote:
        """Price an order as apply would, consuming nothing."""
        return self.validate_with_coupon(retailer_id, code, subtotal, items, shipping_amount, customer_id)[0]

    def validate_with_coupon(
        self,
        retailer_id: UUID,
        code: str,
        subtotal: Decimal | None,
        items: Sequence[Item] | None = None,
        shipping_amount: Decimal | None = None,
        customer_id: str | None = None,
    ) -> tuple[Quote, Coupon]:
        """``validate``, and the coupon it priced the order with (for what the quote does not say,
        such as its discount type), read once."""
        order = Order.of(subtotal, items, shipping_amount)
        check_customer_id(customer_id)
        coupon = self.get_coupon(retailer_id, code)
        usage = self._get(customer_usage_id_for(coupon.id, customer_id), CustomerUsage) if customer_id else None
        campaign = self._get(coupon.campaign_id, Campaign) if coupon.campaign_id is not None else None
        return coupon.quote(order, self.clock(), customer_id, usage, campaign), coupon

    def get_campaign(self, retailer_id: UUID, campaign_id: UUID) -> Campaign:
        campaign = self._get(campaign_id, Campaign)
        if campaign is None or campaign.retailer_id != retailer_id:
            raise CampaignNotFound(f"Campaign {campaign_id} does not exist.", campaign_id=str(campaign_id))
        return campaign

    def get_redemption(self, retailer_id: UUID, redemption_id: UUID) -> Redemption:
        redemption = self._get(redemption_id, Redemption)
        if redemption is None or redemption.retailer_id != retailer_id:
            raise RedemptionNotFound(f"Redemption {redemption_id} does not exist.", redemption_id=str(redemption_id))
        return redemption

    def get_reservation(self, retailer_id: UUID, reservation_id: UUID) -> Reservation:
        reservation = self._get(reservation_id, Reservation)
        if reservation is None or reservation.retailer_id != retailer_id:
            raise _reservation_not_found(reservation_id)
        return reservation

    def _get(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        """The aggregate with this id if it is one of ``kind``; else None."""
        try:
            aggregate: object = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate if isinstance(aggregate, kind) else None

    def coupon_events(
        self, retailer_id: UUID, code: str, after_version: int = 0, limit: int = 100
    ) -> list[RecordedEvent]:
        """A coupon's events (archived coupons' too: their history is kept)."""
        coupon_id = self.get_coupon(retailer_id, code, archived=True).id
        events: Sequence[DomainEventProtocol[UUID]] = list(
            self.events.get(coupon_id, gt=after_version or None, limit=limit)
        )
        return [
            RecordedEvent(
                version=e.originator_version,
                type=type(e).__qualname__,
                occurred_at=e.timestamp,  # type: ignore[attr-defined]
                data={k: v for k, v in e.__dict__.items() if k not in EVENT_ENVELOPE},
            )
            for e in events
        ]

    # --- how each command decides ---------------------------------------------------------------

    def _create_coupon(
        self,
        retailer_id: UUID,
        code: str,
        discount_type: str,
        discount_value: Decimal,
        min_order_value: Decimal | None,
        expires_at: datetime | None,
        max_uses: int | None,
        is_active: bool,
        terms: Mapping[str, Any] | None = None,
    ) -> tuple[tuple[UUID, ...], Callable[[Batch], Coupon]]:
        code = normalize_code(code)
        fields = self._coupon_fields(
            {
                "discount_type": discount_type,
                "discount_value": discount_value,
                "min_order_value": min_order_value,
                "expires_at": expires_at,
                "max_uses": max_uses,
                "is_active": is_active,
                **(terms or {}),
            }
        )
        coupon_id = coupon_id_for(retailer_id, code)

        def create(batch: Batch) -> Coupon:
            if batch.get(coupon_id) is not None:
                raise CouponCodeTaken(f"Coupon code {code} is already taken.", code=code)
            coupon = Coupon(retailer_id=retailer_id, code=code, **fields)
            batch.add(coupon)
            return coupon

        return (coupon_id,), create

    @staticmethod
    def _coupon_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
        """A new coupon's fields (all of them, defaults filled in), checked."""
        unknown = set(fields) - COUPON_FIELDS.keys()
        if unknown:
            raise TypeError(f"unknown coupon fields: {', '.join(sorted(unknown))}")
        checked = {**COUPON_FIELDS, **fields}
        if checked["discount_type"] == FREE_SHIPPING and checked["discount_value"] is None:
            checked["discount_value"] = ZERO
        check_discount(checked["discount_type"], checked["discount_value"])
        check_terms(checked, checked["discount_type"])
        scope = Scope.of(checked["scope"])
        checked["scope"] = scope.as_dict() if scope is not None else None
        return checked

    def _change(
        self, retailer_id: UUID, code: str, change: Callable[[Coupon, datetime], object]
    ) -> tuple[tuple[UUID, ...], Callable[[Batch], Coupon]]:
        code = self._lookup_code(code)
        coupon_id = coupon_id_for(retailer_id, code)

        def decide(batch: Batch) -> Coupon:
            coupon = self._coupon_in(batch, coupon_id, code)
            change(coupon, self.clock())
            return coupon

        return (coupon_id,), decide

    def _apply(
        self,
        retailer_id: UUID,
        code: str,
        order: Order | Decimal,
        idempotency_key: str | None,
        order_id: str | None,
        customer_id: str | None = None,
        also: Callable[[Any, Receipt], None] | None = None,
    ) -> tuple[tuple[UUID, ...], Callable[[Batch], Receipt]]:
        use = UseRequest.of(retailer_id, code, as_order(order), order_id, customer_id)
        keyed_id = redemption_id_for(retailer_id, idempotency_key) if idempotency_key else None

        def redeem(batch: Batch) -> Receipt:
            if keyed_id is not None:
                earlier: Redemption | None = batch.get(keyed_id)
                if earlier is not None:
                    _check_replay(earlier.request_fingerprint, use.fingerprint, idempotency_key)
                    return Receipt(earlier.id, earlier.quote(), replayed=True)
            coupon, usage, campaign = use.parties(batch)
            redemption_id = keyed_id or uuid4()
            quote = coupon.redeem(redemption_id, use.order, self.clock(), order_id, customer_id, usage, campaign)
            batch.add(Redemption(id=redemption_id, **use.recorded(coupon, quote, idempotency_key)))
            receipt = Receipt(redemption_id, quote, replayed=False)
            if also is not None:
                work = also
                batch.also(lambda connection: work(connection, receipt))
            return receipt

        return (*use.needs, *([keyed_id] if keyed_id is not None else [])), redeem

    def _reserve(
        self,
        retailer_id: UUID,
        code: str,
        order: Order,
        idempotency_key: str | None,
        order_id: str | None,
        customer_id: str | None,
        ttl_seconds: int,
        release: UUID | None,
        also: Callable[[Any, Hold], None] | None,
    ) -> tuple[tuple[UUID, ...], Callable[[Batch], Hold]]:
        if isinstance(ttl_seconds, bool) or not 1 <= ttl_seconds <= MAX_HOLD_SECONDS:
            raise InvalidCoupon("ttl_seconds", f"must be 1 to {MAX_HOLD_SECONDS} seconds")
        use = UseRequest.of(retailer_id, code, order, order_id, customer_id, ttl_seconds=ttl_seconds)
        keyed_id = reservation_id_for(retailer_id, idempotency_key) if idempotency_key else None

        def reserve(batch: Batch) -> Hold:
            if keyed_id is not None:
                earlier: Reservation | None = batch.get(keyed_id)
                if earlier is not None:
                    _check_replay(earlier.request_fingerprint, use.fingerprint, idempotency_key)
                    return Hold(earlier.id, earlier.quote(), earlier.expires_at, replayed=True)
            now = self.clock()
            if release is not None:  # first, so that the session's own hold does not count against it
                self._end_hold(batch, retailer_id, release, now)
            coupon, usage, campaign = use.parties(batch)
            reservation_id = keyed_id or uuid4()
            expires_at = now + timedelta(seconds=ttl_seconds)
            quote = coupon.reserve(reservation_id, use.order, now, expires_at, customer_id, usage, campaign)
            recorded = use.recorded(coupon, quote, idempotency_key)
            batch.add(Reservation(id=reservation_id, expires_at=expires_at, **recorded))
            hold = Hold(reservation_id, quote, expires_at, replayed=False)
            if also is not None:
                work = also
                batch.also(lambda connection: work(connection, hold))
            return hold

        return (*use.needs, *(i for i in (keyed_id, release) if i is not None)), reserve

    def _confirm(
        self,
        retailer_id: UUID,
        reservation_id: UUID,
        order_id: str | None,
        also: Callable[[Any, Receipt], None] | None,
    ) -> tuple[tuple[UUID, ...], Callable[[Batch], Receipt]]:
        def confirm(batch: Batch) -> Receipt:
            reservation = self._reservation_in(batch, retailer_id, reservation_id)
            if reservation.status == RESERVATION_CONFIRMED:
                assert reservation.redemption_id is not None
                return Receipt(reservation.redemption_id, reservation.quote(), replayed=True)
            if reservation.status == RESERVATION_RELEASED:
                raise InvalidTransition(
                    f"Reservation {reservation_id} was released: it cannot be confirmed.",
                    reservation_id=str(reservation_id),
                    status=reservation.status,
                    event="confirm",
                )
            now = self.clock()
            if reservation.status == RESERVATION_EXPIRED or not reservation.is_live(now):
                raise ReservationExpired(
                    f"Reservation {reservation_id} expired at {format_timestamp(reservation.expires_at)}.",
                    reservation_id=str(reservation_id),
                    expired_at=format_timestamp(reservation.expires_at),
                )
            coupon: Coupon = self._existing(batch, reservation.coupon_id)
            if coupon.archived:
                raise CouponNotFound(f"Coupon {coupon.code} does not exist.", code=coupon.code)
            redemption_id = confirmed_redemption_id_for(reservation.id)
            final_order_id = order_id if order_id is not None else reservation.order_id
            coupon.confirm_hold(reservation, redemption_id, final_order_id)
            if reservation.customer_id is not None:
                usage: CustomerUsage = self._existing(batch, customer_usage_id_for(coupon.id, reservation.customer_id))
                usage.use(redemption_id, reservation.id)
            if reservation.campaign_id is not None:
                campaign: Campaign = self._existing(batch, reservation.campaign_id)
                campaign.use(redemption_id, reservation.discount_amount, reservation.id)
            use = _use_of(
                retailer_id,
                coupon,
                reservation.quote(),
                None,
                reservation.request_fingerprint,
                final_order_id,
                reservation.customer_id,
            )
            batch.add(Redemption(id=redemption_id, **use))
            reservation.confirm(redemption_id, order_id)
            receipt = Receipt(redemption_id, reservation.quote(), replayed=False)
            if also is not None:
                work = also
                batch.also(lambda connection: work(connection, receipt))
            return receipt

        return (reservation_id,), confirm

    def _release(
        self, retailer_id: UUID, reservation_id: UUID, also: Callable[[Any, Release], None] | None
    ) -> tuple[tuple[UUID, ...], Callable[[Batch], Release]]:
        def release(batch: Batch) -> Release:
            reservation = self._reservation_in(batch, retailer_id, reservation_id)
            if reservation.status == RESERVATION_CONFIRMED:
                raise InvalidTransition(
                    f"Reservation {reservation_id} was confirmed: reverse its redemption to give the use back.",
                    reservation_id=str(reservation_id),
                    status=reservation.status,
                    event="release",
                    redemption_id=str(reservation.redemption_id),
                )
            already = reservation.status != "held"
            if not already:
                self._end_hold(batch, retailer_id, reservation_id, self.clock())
            outcome = Release(reservation, reservation.status, already)
            if also is not None:
                work = also
                batch.also(lambda connection: work(connection, outcome))
            return outcome

        return (reservation_id,), release

    def _expire(self, reservation_ids: Sequence[UUID]) -> tuple[tuple[UUID, ...], Callable[[Batch], int]]:
        def expire(batch: Batch) -> int:
            now = self.clock()
            due = [r for r in map(batch.get, reservation_ids) if isinstance(r, Reservation) and r.is_past_ttl(now)]
            # Their coupons, customer usages and campaigns in one query rather than one each.
            batch.prefetch(
                aggregate_id
                for r in due
                for aggregate_id in (
                    r.coupon_id,
                    customer_usage_id_for(r.coupon_id, r.customer_id) if r.customer_id is not None else None,
                    r.campaign_id,
                )
                if aggregate_id is not None
            )
            for reservation in due:
                self._end_hold(batch, reservation.retailer_id, reservation.id, now)
            return len(due)

        return tuple(reservation_ids), expire

    def _end_hold(self, batch: Batch, retailer_id: UUID, reservation_id: UUID, now: datetime) -> None:
        """End a hold that is still held: released if live, recorded as expired if past its TTL;
        on the reservation, its coupon, the customer's usage and the campaign. Nothing for a hold
        that is not held any more, or not this retailer's."""
        reservation = batch.get(reservation_id)
        if not isinstance(reservation, Reservation) or reservation.retailer_id != retailer_id:
            return
        if reservation.status != "held":
            return
        expired = reservation.is_past_ttl(now)
        coupon: Coupon = self._existing(batch, reservation.coupon_id)
        usage: CustomerUsage | None = None
        if reservation.customer_id is not None:
            usage = self._existing(batch, customer_usage_id_for(coupon.id, reservation.customer_id))
        campaign: Campaign | None = None
        if reservation.campaign_id is not None:
            campaign = self._existing(batch, reservation.campaign_id)
        if expired:
            coupon.expire_hold(reservation_id)
            if usage is not None:
                usage.expire_hold(reservation_id)
            if campaign is not None:
                campaign.expire_hold(reservation_id)
            reservation.expire()
        else:
            coupon.release_hold(reservation_id)
            if usage is not None:
                usage.release_hold(reservation_id)
            if campaign is not None:
                campaign.release_hold(reservation_id)
            reservation.release()

    @staticmethod
    def _usage_in(
        batch: Batch, coupon_id: UUID, usage_id: UUID | None, customer_id: str | None
    ) -> CustomerUsage | None:
        """The customer's usage of the coupon, started in this batch if it is their first."""
        if usage_id is None or customer_id is None:
            return None
        usage: CustomerUsage | None = batch.get(usage_id)
        if usage is None:
            usage = CustomerUsage(coupon_id=coupon_id, customer_id=customer_id)
            batch.add(usage)
        return usage

    @staticmethod
    def _reservation_in(batch: Batch, retailer_id: UUID, reservation_id: UUID) -> Reservation:
        reservation = batch.get(reservation_id)
        if not isinstance(reservation, Reservation) or reservation.retailer_id != retailer_id:
            raise _reservation_not_found(reservation_id)
        return reservation

    def _reverse(
        self, retailer_id: UUID, redemption_id: UUID, reason: str | None
    ) -> tuple[tuple[UUID, ...], Callable[[Batch], Reversal]]:
        def reverse(batch: Batch) -> Reversal:
            redemption = batch.get(redemption_id)
            if not isinstance(redemption, Redemption) or redemption.retailer_id != retailer_id:
                raise RedemptionNotFound(
                    f"Redemption {redemption_id} does not exist.", redemption_id=str(redemption_id)
                )
            if redemption.is_reversed:
                return Reversal(redemption, already_reversed=True)
            coupon: Coupon = self._existing(batch, redemption.coupon_id)
            coupon.reverse_redemption(redemption.id, redemption.discount_amount, reason)
            if redemption.customer_id is not None:
                usage: CustomerUsage = self._existing(batch, customer_usage_id_for(coupon.id, redemption.customer_id))
                usage.give_back(redemption.id)
            if redemption.campaign_id is not None:
                campaign: Campaign = self._existing(batch, redemption.campaign_id)
                campaign.give_back(redemption.id, redemption.discount_amount)
            redemption.reverse(reason, self.clock())
            return Reversal(redemption, already_reversed=False)

        return (redemption_id,), reverse

    def _plan_campaign(
        self,
        retailer_id: UUID,
        name: str,
        prefix: str,
        count: int,
        template: Mapping[str, Any],
        max_redemptions: int | None,
        max_discount_total: Decimal | None,
    ) -> CampaignPlan:
        if not 1 <= count <= MAX_CAMPAIGN_CODES:
            raise InvalidCoupon("count", f"must be 1 to {MAX_CAMPAIGN_CODES}")
        if max_redemptions is not None and max_redemptions < 1:
            raise InvalidCoupon("max_redemptions", "must be at least 1")
        if max_discount_total is not None and max_discount_total <= 0:
            raise InvalidCoupon("max_discount_total", "must be greater than 0")
        fields = self._coupon_fields(template)
        return CampaignPlan(
            self, retailer_id, name, normalize_prefix(prefix), count, fields, max_redemptions, max_discount_total
        )

    @staticmethod
    def _existing(batch: Batch, aggregate_id: UUID) -> Any:
        """An aggregate the store must hold (one a redemption names)."""
        aggregate = batch.get(aggregate_id)
        if aggregate is None:
            raise LookupError(f"aggregate {aggregate_id} is missing from the store")
        return aggregate

    @staticmethod
    def _coupon_in(batch: Batch, coupon_id: UUID, code: str) -> Coupon:
        coupon: Coupon | None = batch.get(coupon_id)
        if coupon is None or coupon.archived:
            raise CouponNotFound(f"Coupon {code} does not exist.", code=code)
        return coupon

    @staticmethod
    def _lookup_code(code: str) -> str:
        try:
            return normalize_code(code)
        except InvalidCoupon:
            raise CouponNotFound(f"Coupon {ascii_upper(code)} does not exist.", code=code) from None

    @staticmethod
    def _fingerprint(request: dict[str, Any]) -> str:
        return hashlib.sha256(FINGERPRINT_JSON.encode(request).encode()).hexdigest()


def _check_replay(recorded: str, fingerprint: str, idempotency_key: str | None) -> None:
    """A repeated Idempotency-Key replays only the same request; another one is IDEMPOTENCY_KEY_REUSED."""
    if recorded != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request.", idempotency_key=idempotency_key
        )


@dataclass(frozen=True)
class UseRequest:
    """What apply and reserve share about a request for a use of a coupon: the order, the
    request's fingerprint (for idempotency keys), and the ids of the aggregates it involves
    (``coupon_id`` None for a code that cannot exist: COUPON_NOT_FOUND once the key is checked)."""

    retailer_id: UUID
    code: str
    normalized: str
    order: Order
    order_id: str | None
    customer_id: str | None
    fingerprint: str
    coupon_id: UUID | None
    usage_id: UUID | None

    @classmethod
    def of(
        cls,
        retailer_id: UUID,
        code: str,
        order: Order,
        order_id: str | None,
        customer_id: str | None,
        **more: Any,
    ) -> UseRequest:
        """``more``: what else the request's fingerprint holds (reserve's ttl_seconds)."""
        check_customer_id(customer_id)
        normalized = ascii_upper(code)
        request = {"code": normalized, **order.fingerprint(), "order_id": order_id, **more}
        if customer_id is not None:
            request["customer_id"] = customer_id
        try:
            coupon_id: UUID | None = coupon_id_for(retailer_id, normalize_code(code))
        except InvalidCoupon:
            coupon_id = None
        usage_id = customer_usage_id_for(coupon_id, customer_id) if coupon_id and customer_id else None
        fingerprint = CouponLedger._fingerprint(request)
        return cls(retailer_id, code, normalized, order, order_id, customer_id, fingerprint, coupon_id, usage_id)

    @property
    def needs(self) -> tuple[UUID, ...]:
        return tuple(i for i in (self.coupon_id, self.usage_id) if i is not None)

    def parties(self, batch: Batch) -> tuple[Coupon, CustomerUsage | None, Campaign | None]:
        """The coupon (COUPON_NOT_FOUND if missing or archived), the customer's usage of it (started
        in this batch on a first use) and its campaign."""
        if self.coupon_id is None:
            raise CouponNotFound(f"Coupon {self.normalized} does not exist.", code=self.code)
        coupon = CouponLedger._coupon_in(batch, self.coupon_id, self.normalized)
        usage = CouponLedger._usage_in(batch, self.coupon_id, self.usage_id, self.customer_id)
        campaign: Campaign | None = batch.get(coupon.campaign_id) if coupon.campaign_id is not None else None
        return coupon, usage, campaign

    def recorded(self, coupon: Coupon, quote: Quote, idempotency_key: str | None) -> dict[str, Any]:
        """The fields a Redemption or a Reservation records of this use."""
        return _use_of(
            self.retailer_id, coupon, quote, idempotency_key, self.fingerprint, self.order_id, self.customer_id
        )


def _use_of(
    retailer_id: UUID,
    coupon: Coupon,
    quote: Quote,
    idempotency_key: str | None,
    fingerprint: str,
    order_id: str | None,
    customer_id: str | None,
) -> dict[str, Any]:
    """What a Redemption and a Reservation both record of a use of ``coupon`` priced at ``quote``."""
    return {
        "retailer_id": retailer_id,
        "coupon_id": coupon.id,
        "code": coupon.code,
        "idempotency_key": idempotency_key,
        "request_fingerprint": fingerprint,
        "original_subtotal": quote.original_subtotal,
        "discount_amount": quote.discount_amount,
        "final_total": quote.final_total,
        "free_shipping": quote.free_shipping,
        "order_id": order_id,
        "customer_id": customer_id,
        "campaign_id": coupon.campaign_id,
    }


def _reservation_not_found(reservation_id: UUID) -> ReservationNotFound:
    return ReservationNotFound(f"Reservation {reservation_id} does not exist.", reservation_id=str(reservation_id))


def _deactivate(coupon: Coupon, now: datetime) -> None:
    if coupon.is_active:
        coupon.deactivate()


def _archive(coupon: Coupon, now: datetime) -> None:
    coupon.archive()


class CampaignPlan:
    """The commands that create a campaign: one for the campaign, then one per chunk of codes.

    Each chunk draws its codes at random (prefix + 6 characters without look-alikes), all distinct
    from each other and from the campaign's earlier ones; a code that already exists (the
    deterministic coupon id finds it) is drawn again. Every chunk is one save.
    """

    def __init__(
        self,
        ledger: CouponLedger,
        retailer_id: UUID,
        name: str,
        prefix: str,
        count: int,
        fields: dict[str, Any],
        max_redemptions: int | None,
        max_discount_total: Decimal | None,
    ) -> None:
        self.ledger = ledger
        self.retailer_id = retailer_id
        self.name = name
        self.prefix = prefix
        self.count = count
        self.fields = fields
        self.max_redemptions = max_redemptions
        self.max_discount_total = max_discount_total
        self.campaign_id: UUID | None = None
        self.drawn: set[str] = set()

    def chunks(self) -> list[int]:
        full, rest = divmod(self.count, CAMPAIGN_CHUNK)
        return [CAMPAIGN_CHUNK] * full + ([rest] if rest else [])

    def start(self) -> tuple[tuple[UUID, ...], Callable[[Batch], Campaign]]:
        campaign_id = self.campaign_id = uuid4()

        def create(batch: Batch) -> Campaign:
            campaign = Campaign(
                id=campaign_id,
                retailer_id=self.retailer_id,
                name=self.name,
                prefix=self.prefix,
                count=self.count,
                template=self.fields,
                max_redemptions=self.max_redemptions,
                max_discount_total=self.max_discount_total,
            )
            batch.add(campaign)
            return campaign

        return (), create

    def generate(self, size: int) -> tuple[tuple[UUID, ...], Callable[[Batch], Campaign]]:
        campaign_id = self.campaign_id
        assert campaign_id is not None, "start() first"
        codes = [self._draw() for _ in range(size)]
        ids = tuple(coupon_id_for(self.retailer_id, code) for code in codes)

        def decide(batch: Batch) -> Campaign:
            campaign: Campaign | None = batch.get(campaign_id)
            assert campaign is not None
            for code, coupon_id in zip(codes, ids, strict=True):
                while batch.get(coupon_id) is not None:  # taken: draw another
                    code = self._draw()
                    coupon_id = coupon_id_for(self.retailer_id, code)
                batch.add(Coupon(retailer_id=self.retailer_id, code=code, campaign_id=campaign_id, **self.fields))
            campaign.codes_generated(size)
            return campaign

        return (campaign_id, *ids), decide

    def _draw(self) -> str:
        while True:
            code = generate_code(self.prefix)
            if code not in self.drawn:
                self.drawn.add(code)
                return code
