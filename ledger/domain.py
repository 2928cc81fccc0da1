"""The Coupon aggregate, the Redemption aggregate and the rules a redemption must pass.

Nothing here grows with a coupon's history: a coupon keeps a count of its uses, and each
redemption is its own aggregate, so the store itself rejects a repeated idempotency key.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger.errors import (
    CouponExpired,
    CouponInactive,
    InvalidCoupon,
    MinOrderNotMet,
    UsageLimitReached,
)
from ledger.money import HUNDRED, format_amount, percentage_of
from ledger.timestamps import format_timestamp

NAMESPACE = UUID("6f1c3f8e-2b9a-4d1e-9c55-0c0a7e4b7d21")
CODE_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
PERCENTAGE = "percentage"
FIXED = "fixed"
DISCOUNT_TYPES = (PERCENTAGE, FIXED)


ASCII_WHITESPACE = " \t\n\r\f\v"
CODE_RULE = "must be 3-50 characters of A-Z, a-z, 0-9, '_' or '-' (surrounding spaces are ignored)"


def ascii_upper(raw: str) -> str:
    """Trimmed of ASCII whitespace and upper-cased in ASCII only: a non-ASCII letter is kept
    as it is, never transliterated ('straße' stays 'STRAßE', which is no code)."""
    trimmed = raw.strip(ASCII_WHITESPACE)
    return trimmed.upper() if trimmed.isascii() else "".join(c.upper() if c.isascii() else c for c in trimmed)


def normalize_code(raw: str) -> str:
    """The canonical form of a coupon code; InvalidCoupon if ``raw`` is not one."""
    code = ascii_upper(raw)
    if not 3 <= len(code) <= 50 or not set(code) <= CODE_ALPHABET:
        raise InvalidCoupon("code", CODE_RULE)
    return code


@lru_cache(maxsize=65_536)  # uuid5 costs a few microseconds; the same coupons come back all the time
def coupon_id_for(retailer_id: UUID, code: str) -> UUID:
    return uuid5(NAMESPACE, f"coupon/{retailer_id}/{code}")


def redemption_id_for(retailer_id: UUID, idempotency_key: str) -> UUID:
    return uuid5(NAMESPACE, f"redemption/{retailer_id}/{idempotency_key}")


def check_discount(discount_type: str, discount_value: Decimal) -> None:
    if discount_type not in DISCOUNT_TYPES:
        raise InvalidCoupon("discount_type", f"must be one of {', '.join(DISCOUNT_TYPES)}")
    if discount_value <= 0:
        raise InvalidCoupon("discount_value", "must be greater than 0")
    if discount_type == PERCENTAGE and discount_value > HUNDRED:
        raise InvalidCoupon("discount_value", "a percentage must not exceed 100")


@dataclass(frozen=True)
class Quote:
    code: str
    original_subtotal: Decimal
    discount_amount: Decimal
    final_total: Decimal
    free_shipping: bool = False


class Coupon(Aggregate):
    class Created(Aggregate.Created):
        retailer_id: UUID
        code: str
        discount_type: str
        discount_value: Decimal
        min_order_value: Decimal | None
        expires_at: datetime | None
        max_uses: int | None
        is_active: bool

    class Deactivated(Aggregate.Event):
        pass

    class Activated(Aggregate.Event):
        pass

    class Redeemed(Aggregate.Event):
        redemption_id: UUID
        original_subtotal: Decimal
        discount_amount: Decimal
        final_total: Decimal
        order_id: str | None

    @staticmethod
    def create_id(retailer_id: UUID, code: str) -> UUID:
        return coupon_id_for(retailer_id, code)

    @event(Created)
    def __init__(
        self,
        retailer_id: UUID,
        code: str,
        discount_type: str,
        discount_value: Decimal,
        min_order_value: Decimal | None,
        expires_at: datetime | None,
        max_uses: int | None,
        is_active: bool,
    ) -> None:
        self.retailer_id = retailer_id
        self.code = code
        self.discount_type = discount_type
        self.discount_value = discount_value
        self.min_order_value = min_order_value
        self.expires_at = expires_at
        self.max_uses = max_uses
        self.is_active = is_active
        self.uses_count = 0

    @event(Deactivated)
    def deactivate(self) -> None:
        self.is_active = False

    @event(Activated)
    def activate(self) -> None:
        self.is_active = True

    def status(self, now: datetime) -> str:
        if not self.is_active:
            return "inactive"
        if self.is_expired(now):
            return "time_expired"
        if self.is_used_up():
            return "count_expired"
        return "active"

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def is_used_up(self) -> bool:
        return self.max_uses is not None and self.uses_count >= self.max_uses

    def quote(self, subtotal: Decimal, now: datetime) -> Quote:
        """Price an order with this coupon, or raise the first rule it breaks."""
        self.check_is_active()
        self.check_is_not_expired(now)
        self.check_uses_remain()
        self.check_minimum_order_met(subtotal)
        discount = self.discount_on(subtotal)
        return Quote(self.code, subtotal, discount, subtotal - discount)

    def discount_on(self, subtotal: Decimal) -> Decimal:
        if self.discount_type == PERCENTAGE:
            return percentage_of(subtotal, self.discount_value)
        return min(self.discount_value, subtotal)

    def redeem(self, redemption_id: UUID, subtotal: Decimal, now: datetime, order_id: str | None) -> Quote:
        quote = self.quote(subtotal, now)
        self._record_redemption(
            redemption_id=redemption_id,
            original_subtotal=quote.original_subtotal,
            discount_amount=quote.discount_amount,
            final_total=quote.final_total,
            order_id=order_id,
        )
        return quote

    @event(Redeemed)
    def _record_redemption(
        self,
        redemption_id: UUID,
        original_subtotal: Decimal,
        discount_amount: Decimal,
        final_total: Decimal,
        order_id: str | None,
    ) -> None:
        self.uses_count += 1

    def check_is_active(self) -> None:
        if not self.is_active:
            raise CouponInactive(f"Coupon {self.code} is not active.")

    def check_is_not_expired(self, now: datetime) -> None:
        if self.is_expired(now):
            assert self.expires_at is not None
            raise CouponExpired(
                f"Coupon {self.code} expired at {format_timestamp(self.expires_at)}.",
                expired_at=format_timestamp(self.expires_at),
            )

    def check_uses_remain(self) -> None:
        if self.is_used_up():
            raise UsageLimitReached(
                f"Coupon {self.code} has reached its usage limit of {self.max_uses}.",
                max_uses=self.max_uses,
            )

    def check_minimum_order_met(self, subtotal: Decimal) -> None:
        if self.min_order_value is not None and subtotal < self.min_order_value:
            raise MinOrderNotMet(
                f"Order subtotal {format_amount(subtotal)} is below the minimum "
                f"{format_amount(self.min_order_value)} for {self.code}.",
                required_minimum=format_amount(self.min_order_value),
                subtotal=format_amount(subtotal),
            )


class Redemption(Aggregate):
    """One use of a coupon. Keyed redemptions get an id derived from the key, so the
    store refuses a second redemption under the same key."""

    class Recorded(Aggregate.Created):
        retailer_id: UUID
        coupon_id: UUID
        code: str
        idempotency_key: str | None
        request_fingerprint: str
        original_subtotal: Decimal
        discount_amount: Decimal
        final_total: Decimal
        free_shipping: bool
        order_id: str | None

    @event(Recorded)
    def __init__(
        self,
        id: UUID,  # noqa: A002 - the library takes an explicit aggregate id by this name
        retailer_id: UUID,
        coupon_id: UUID,
        code: str,
        idempotency_key: str | None,
        request_fingerprint: str,
        original_subtotal: Decimal,
        discount_amount: Decimal,
        final_total: Decimal,
        free_shipping: bool,
        order_id: str | None,
    ) -> None:
        self.retailer_id = retailer_id
        self.coupon_id = coupon_id
        self.code = code
        self.idempotency_key = idempotency_key
        self.request_fingerprint = request_fingerprint
        self.original_subtotal = original_subtotal
        self.discount_amount = discount_amount
        self.final_total = final_total
        self.free_shipping = free_shipping
        self.order_id = order_id

    def quote(self) -> Quote:
        return Quote(self.code, self.original_subtotal, self.discount_amount, self.final_total, self.free_shipping)
