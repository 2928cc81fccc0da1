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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import DomainEvent, DomainEventProtocol, MutableOrImmutableAggregate
from eventsourcing.persistence import Recording, Transcoder

from ledger.domain import (
    Coupon,
    Quote,
    Redemption,
    ascii_upper,
    check_discount,
    coupon_id_for,
    normalize_code,
    redemption_id_for,
)
from ledger.errors import (
    CouponCodeTaken,
    CouponNotFound,
    IdempotencyKeyReused,
    InvalidCoupon,
)
from ledger.event_store import LedgerTranscoder
from ledger.writer import Batch, BatchWriter

SNAPSHOT_INTERVAL = 100  # measured with bench/capacity.py: see README, Performance
# The idempotency key of a coupon redeemed at checkout: this prefix and the order id.
CHECKOUT_KEY_PREFIX = "order:"
# A redemption's request, as the fingerprint hashes it: keys sorted (one encoder, not one a call).
FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True)
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
class RecordedEvent:
    version: int
    type: str
    occurred_at: datetime
    data: dict[str, Any]


class CouponLedger(Application[UUID]):
    name = "Ledger"
    env = {"AGGREGATE_CACHE_MAXSIZE": "10000"}
    snapshotting_intervals = {Coupon: SNAPSHOT_INTERVAL}

    def __init__(self, env: dict[str, str] | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(env)
        self.clock = clock
        self.writer = BatchWriter(self, cached_types=(Coupon,))

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
    ) -> Coupon:
        command = self._create_coupon(
            retailer_id, code, discount_type, discount_value, min_order_value, expires_at, max_uses, is_active
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
    ) -> Coupon:
        command = self._create_coupon(
            retailer_id, code, discount_type, discount_value, min_order_value, expires_at, max_uses, is_active
        )
        return await self.writer.execute_async(*command)

    def deactivate(self, retailer_id: UUID, code: str) -> Coupon:
        return self.writer.execute(*self._set_active(retailer_id, code, False))

    async def deactivate_async(self, retailer_id: UUID, code: str) -> Coupon:
        return await self.writer.execute_async(*self._set_active(retailer_id, code, False))

    def activate(self, retailer_id: UUID, code: str) -> Coupon:
        return self.writer.execute(*self._set_active(retailer_id, code, True))

    async def activate_async(self, retailer_id: UUID, code: str) -> Coupon:
        return await self.writer.execute_async(*self._set_active(retailer_id, code, True))

    def apply(
        self,
        retailer_id: UUID,
        code: str,
        subtotal: Decimal,
        idempotency_key: str | None = None,
        order_id: str | None = None,
        also: Callable[[Any, Receipt], None] | None = None,
    ) -> Receipt:
        """Redeem. ``also(connection, receipt)``, if given, runs in the transaction that saves the
        redemption (PostgreSQL only): both are stored, or neither, and its error is the caller's.
        A replayed redemption does not run it again."""
        return self.writer.execute(*self._apply(retailer_id, code, subtotal, idempotency_key, order_id, also))

    async def apply_async(
        self,
        retailer_id: UUID,
        code: str,
        subtotal: Decimal,
        idempotency_key: str | None = None,
        order_id: str | None = None,
    ) -> Receipt:
        return await self.writer.execute_async(*self._apply(retailer_id, code, subtotal, idempotency_key, order_id))

    # --- queries: read the store directly -------------------------------------------------------

    def get_coupon(self, retailer_id: UUID, code: str) -> Coupon:
        code = self._lookup_code(code)
        try:
            coupon: Coupon = self.repository.get(coupon_id_for(retailer_id, code))
        except AggregateNotFoundError:
            raise CouponNotFound(f"Coupon {code} does not exist.", code=code) from None
        return coupon

    def validate(self, retailer_id: UUID, code: str, subtotal: Decimal) -> Quote:
        return self.get_coupon(retailer_id, code).quote(subtotal, self.clock())

    def coupon_events(
        self, retailer_id: UUID, code: str, after_version: int = 0, limit: int = 100
    ) -> list[RecordedEvent]:
        coupon_id = self.get_coupon(retailer_id, code).id
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
    ) -> tuple[tuple[UUID, ...], Callable[[Batch], Coupon]]:
        code = normalize_code(code)
        check_discount(discount_type, discount_value)
        if max_uses is not None and max_uses < 1:
            raise InvalidCoupon("max_uses", "must be at least 1")
        coupon_id = coupon_id_for(retailer_id, code)

        def create(batch: Batch) -> Coupon:
            if batch.get(coupon_id) is not None:
                raise CouponCodeTaken(f"Coupon code {code} is already taken.", code=code)
            coupon = Coupon(
                retailer_id=retailer_id,
                code=code,
                discount_type=discount_type,
                discount_value=discount_value,
                min_order_value=min_order_value,
                expires_at=expires_at,
                max_uses=max_uses,
                is_active=is_active,
            )
            batch.add(coupon)
            return coupon

        return (coupon_id,), create

    def _set_active(
        self, retailer_id: UUID, code: str, active: bool
    ) -> tuple[tuple[UUID, ...], Callable[[Batch], Coupon]]:
        code = self._lookup_code(code)
        coupon_id = coupon_id_for(retailer_id, code)

        def change(batch: Batch) -> Coupon:
            coupon = self._coupon_in(batch, coupon_id, code)
            if active and not coupon.is_active:
                coupon.activate()
            elif not active and coupon.is_active:
                coupon.deactivate()
            return coupon

        return (coupon_id,), change

    def _apply(
        self,
        retailer_id: UUID,
        code: str,
        subtotal: Decimal,
        idempotency_key: str | None,
        order_id: str | None,
        also: Callable[[Any, Receipt], None] | None = None,
    ) -> tuple[tuple[UUID, ...], Callable[[Batch], Receipt]]:
        normalized = ascii_upper(code)
        fingerprint = self._fingerprint(code=normalized, subtotal=str(subtotal), order_id=order_id)
        keyed_id = redemption_id_for(retailer_id, idempotency_key) if idempotency_key else None
        try:
            coupon_id: UUID | None = coupon_id_for(retailer_id, normalize_code(code))
        except InvalidCoupon:
            coupon_id = None

        def redeem(batch: Batch) -> Receipt:
            if keyed_id is not None:
                earlier: Redemption | None = batch.get(keyed_id)
                if earlier is not None:
                    return self._replay(earlier, fingerprint)
            if coupon_id is None:
                raise CouponNotFound(f"Coupon {normalized} does not exist.", code=code)
            coupon = self._coupon_in(batch, coupon_id, normalized)
            redemption_id = keyed_id or uuid4()
            quote = coupon.redeem(redemption_id, subtotal, self.clock(), order_id)
            batch.add(
                Redemption(
                    id=redemption_id,
                    retailer_id=retailer_id,
                    coupon_id=coupon.id,
                    code=coupon.code,
                    idempotency_key=idempotency_key,
                    request_fingerprint=fingerprint,
                    original_subtotal=quote.original_subtotal,
                    discount_amount=quote.discount_amount,
                    final_total=quote.final_total,
                    free_shipping=quote.free_shipping,
                    order_id=order_id,
                )
            )
            receipt = Receipt(redemption_id, quote, replayed=False)
            if also is not None:
                work = also
                batch.also(lambda connection: work(connection, receipt))
            return receipt

        needs = tuple(i for i in (keyed_id, coupon_id) if i is not None)
        return needs, redeem

    @staticmethod
    def _coupon_in(batch: Batch, coupon_id: UUID, code: str) -> Coupon:
        coupon: Coupon | None = batch.get(coupon_id)
        if coupon is None:
            raise CouponNotFound(f"Coupon {code} does not exist.", code=code)
        return coupon

    @staticmethod
    def _replay(redemption: Redemption, fingerprint: str) -> Receipt:
        if redemption.request_fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used with a different request.",
                idempotency_key=redemption.idempotency_key,
            )
        return Receipt(redemption.id, redemption.quote(), replayed=True)

    @staticmethod
    def _lookup_code(code: str) -> str:
        try:
            return normalize_code(code)
        except InvalidCoupon:
            raise CouponNotFound(f"Coupon {ascii_upper(code)} does not exist.", code=code) from None

    @staticmethod
    def _fingerprint(**request: object) -> str:
        return hashlib.sha256(FINGERPRINT_JSON.encode(request).encode()).hexdigest()
