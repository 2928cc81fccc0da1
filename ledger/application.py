"""CouponLedger: the application service. Commands are get -> change -> save().

Concurrency is optimistic: every event carries the aggregate's next version and the
store's primary key (originator_id, originator_version) admits only one writer of each
version. A writer that loses re-reads the coupon, re-checks every rule and saves again,
so a coupon can never be redeemed past its limit, whatever runs in parallel.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError

from ledger.domain import (
    Coupon,
    Quote,
    Redemption,
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
    LedgerBusy,
)

T = TypeVar("T")
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
    max_attempts = 50

    def __init__(self, env: dict[str, str] | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(env)
        self.clock = clock
        self.version_conflicts = 0
        self._stats_lock = threading.Lock()

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
        code = normalize_code(code)
        check_discount(discount_type, discount_value)
        if max_uses is not None and max_uses < 1:
            raise InvalidCoupon("max_uses", "must be at least 1")
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
        try:
            self.save(coupon)
        except IntegrityError:
            raise CouponCodeTaken(f"Coupon code {code} is already taken.", code=code) from None
        return coupon

    def get_coupon(self, retailer_id: UUID, code: str) -> Coupon:
        code = self._lookup_code(code)
        try:
            coupon: Coupon = self.repository.get(coupon_id_for(retailer_id, code))
        except AggregateNotFoundError:
            raise CouponNotFound(f"Coupon {code} does not exist.", code=code) from None
        return coupon

    def deactivate(self, retailer_id: UUID, code: str) -> Coupon:
        def change(coupon: Coupon) -> Coupon:
            if coupon.is_active:
                coupon.deactivate()
                self.save(coupon)
            return coupon

        return self._with_retries(retailer_id, code, change)

    def activate(self, retailer_id: UUID, code: str) -> Coupon:
        def change(coupon: Coupon) -> Coupon:
            if not coupon.is_active:
                coupon.activate()
                self.save(coupon)
            return coupon

        return self._with_retries(retailer_id, code, change)

    def validate(self, retailer_id: UUID, code: str, subtotal: Decimal) -> Quote:
        return self.get_coupon(retailer_id, code).quote(subtotal, self.clock())

    def apply(
        self,
        retailer_id: UUID,
        code: str,
        subtotal: Decimal,
        idempotency_key: str | None = None,
        order_id: str | None = None,
    ) -> Receipt:
        fingerprint = self._fingerprint(code=code.strip().upper(), subtotal=str(subtotal), order_id=order_id)
        keyed_id = redemption_id_for(retailer_id, idempotency_key) if idempotency_key else None

        def redeem(coupon: Coupon) -> Receipt:
            redemption_id = keyed_id or uuid4()
            quote = coupon.redeem(redemption_id, subtotal, self.clock(), order_id)
            redemption = Redemption(
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
            self.save(coupon, redemption)
            return Receipt(redemption_id, quote, replayed=False)

        def replay_if_recorded() -> Receipt | None:
            if keyed_id is None:
                return None
            return self._replay(keyed_id, fingerprint)

        return self._with_retries(retailer_id, code, redeem, before_each=replay_if_recorded)

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

    def _replay(self, redemption_id: UUID, fingerprint: str) -> Receipt | None:
        try:
            redemption: Redemption = self.repository.get(redemption_id)
        except AggregateNotFoundError:
            return None
        if redemption.request_fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used with a different request.",
                idempotency_key=redemption.idempotency_key,
            )
        return Receipt(redemption.id, redemption.quote(), replayed=True)

    def _with_retries(
        self,
        retailer_id: UUID,
        code: str,
        change: Callable[[Coupon], T],
        before_each: Callable[[], T | None] | None = None,
    ) -> T:
        """Re-read, re-check, re-save: run ``change`` (which saves) on a fresh coupon until its save wins.

        Only a version conflict is retried, a bounded number of times with jittered
        backoff; every domain error propagates at once.
        """
        for attempt in range(self.max_attempts):
            if before_each is not None:
                earlier = before_each()
                if earlier is not None:
                    return earlier
            coupon = self.get_coupon(retailer_id, code)
            try:
                return change(coupon)
            except IntegrityError:
                with self._stats_lock:
                    self.version_conflicts += 1
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
        raise LedgerBusy(
            f"Coupon {code.strip().upper()} is under heavy concurrent use; retry shortly.",
            retry_after=1,
        )

    @staticmethod
    def _lookup_code(code: str) -> str:
        try:
            return normalize_code(code)
        except InvalidCoupon:
            raise CouponNotFound(f"Coupon {code.strip().upper()} does not exist.", code=code) from None

    @staticmethod
    def _fingerprint(**request: object) -> str:
        return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
