"""The values a coupon is made of and the rules on them: codes, ids, orders, quotes, terms."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any
from uuid import UUID, uuid5

from ledger.errors import FieldImmutable, InvalidCoupon, SubtotalMismatch
from ledger.money import CENT, HUNDRED, MAX_AMOUNT, format_amount

NAMESPACE = UUID("6f1c3f8e-2b9a-4d1e-9c55-0c0a7e4b7d21")
CODE_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
# Generated codes: no look-alikes (no 0/O, no 1/I/L).
GENERATED_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
GENERATED_LENGTH = 6
PERCENTAGE = "percentage"
FIXED = "fixed"
FREE_SHIPPING = "free_shipping"
DISCOUNT_TYPES = (PERCENTAGE, FIXED, FREE_SHIPPING)
ZERO = Decimal("0.00")

# The derived statuses (never stored): see Coupon.status.
INACTIVE = "inactive"
SCHEDULED = "scheduled"
TIME_EXPIRED = "time_expired"
COUNT_EXPIRED = "count_expired"
ACTIVE = "active"
STATUSES = (INACTIVE, SCHEDULED, TIME_EXPIRED, COUNT_EXPIRED, ACTIVE)

# A reservation's states (Reservation.status).
RESERVATION_HELD = "held"
RESERVATION_CONFIRMED = "confirmed"
RESERVATION_RELEASED = "released"
RESERVATION_EXPIRED = "expired"
# A hold lasts 900 s unless asked otherwise, at most a day.
DEFAULT_HOLD_SECONDS = 900
MAX_HOLD_SECONDS = 86_400

# The platform specification's state machine: the statuses each event may be fired from. Its
# expire_time and expire_count arrows happen by themselves (the status is derived from the clock
# and the count), so they are not events one can send. `scheduled` (before starts_at; not in the
# platform's diagram) takes the arrows of `active`: it is an active coupon whose window has not
# opened yet.
TRANSITIONS: dict[str, frozenset[str]] = {
    "activate": frozenset({INACTIVE, TIME_EXPIRED, COUNT_EXPIRED}),
    "deactivate": frozenset({ACTIVE, SCHEDULED}),
    "extend_expiry_and_activate": frozenset({INACTIVE, ACTIVE, SCHEDULED, TIME_EXPIRED, COUNT_EXPIRED}),
    "reconcile_count_status": frozenset({INACTIVE, ACTIVE, SCHEDULED, COUNT_EXPIRED}),
}

# Fields a coupon's Updated event may change (PATCH); type, value and code never change.
MUTABLE_FIELDS = frozenset(
    {
        "min_order_value",
        "starts_at",
        "expires_at",
        "max_uses",
        "max_uses_per_customer",
        "max_discount_amount",
        "scope",
        "public",
    }
)
IMMUTABLE_FIELDS = frozenset({"code", "discount_type", "discount_value", "campaign_id"})


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


def normalize_prefix(raw: str) -> str:
    """A campaign's prefix: trimmed, upper-cased, code characters, leaving room for the random part."""
    prefix = ascii_upper(raw)
    if len(prefix) > 50 - GENERATED_LENGTH or not set(prefix) <= CODE_ALPHABET:
        raise InvalidCoupon("prefix", f"must be 0-{50 - GENERATED_LENGTH} characters of A-Z, a-z, 0-9, '_' or '-'")
    return prefix


def generate_code(prefix: str) -> str:
    return prefix + "".join(secrets.choice(GENERATED_ALPHABET) for _ in range(GENERATED_LENGTH))


@lru_cache(maxsize=65_536)  # uuid5 costs a few microseconds; the same coupons come back all the time
def coupon_id_for(retailer_id: UUID, code: str) -> UUID:
    return uuid5(NAMESPACE, f"coupon/{retailer_id}/{code}")


def redemption_id_for(retailer_id: UUID, idempotency_key: str) -> UUID:
    return uuid5(NAMESPACE, f"redemption/{retailer_id}/{idempotency_key}")


def customer_usage_id_for(coupon_id: UUID, customer_id: str) -> UUID:
    return uuid5(NAMESPACE, f"customer/{coupon_id}/{customer_id}")


def reservation_id_for(retailer_id: UUID, idempotency_key: str) -> UUID:
    return uuid5(NAMESPACE, f"reservation/{retailer_id}/{idempotency_key}")


def confirmed_redemption_id_for(reservation_id: UUID) -> UUID:
    """The redemption a hold becomes: one per hold, so the store refuses a second confirmation."""
    return uuid5(NAMESPACE, f"confirmed/{reservation_id}")


def live_holds(holds: Mapping[str, datetime], now: datetime) -> int:
    """How many of these holds (reservation id -> expires_at) still count at ``now``."""
    return sum(1 for expires_at in holds.values() if now < expires_at)


def without(holds: Mapping[str, Any], reservation_id: UUID) -> dict[str, Any]:
    """A copy of ``holds`` without this reservation (aggregates replace their attributes, never
    change them in place: see ledger.event_store.copy_aggregate)."""
    key = str(reservation_id)
    return {k: v for k, v in holds.items() if k != key}


# --- what a coupon applies to -------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """A line of an order: ``quantity`` times ``unit_price`` of a product (and its variant, category)."""

    product_id: str
    quantity: int
    unit_price: Decimal
    variant_id: str | None = None
    category_id: str | None = None

    @property
    def total(self) -> Decimal:
        return self.unit_price * self.quantity

    def as_dict(self) -> dict[str, Any]:
        line: dict[str, Any] = {
            "product_id": self.product_id,
            "quantity": self.quantity,
            "unit_price": format_amount(self.unit_price),
        }
        if self.variant_id is not None:
            line["variant_id"] = self.variant_id
        if self.category_id is not None:
            line["category_id"] = self.category_id
        return line


SCOPE_FIELDS = ("product_ids", "variant_ids", "category_ids", "excluded_product_ids", "excluded_category_ids")


@dataclass(frozen=True)
class Scope:
    """Which lines of an order a coupon discounts. A line is eligible if it matches one of the
    inclusion lists (any line, when there are none) and neither exclusion list."""

    product_ids: frozenset[str] = frozenset()
    variant_ids: frozenset[str] = frozenset()
    category_ids: frozenset[str] = frozenset()
    excluded_product_ids: frozenset[str] = frozenset()
    excluded_category_ids: frozenset[str] = frozenset()

    @classmethod
    def of(cls, data: Mapping[str, Iterable[str]] | None) -> Scope | None:
        if not data:
            return None
        scope = cls(**{name: frozenset(data.get(name) or ()) for name in SCOPE_FIELDS})
        return scope if scope.as_dict() else None

    def as_dict(self) -> dict[str, list[str]]:
        """The stored form: sorted lists, empty lists left out."""
        return {name: sorted(getattr(self, name)) for name in SCOPE_FIELDS if getattr(self, name)}

    @property
    def has_inclusions(self) -> bool:
        return bool(self.product_ids or self.variant_ids or self.category_ids)

    def eligible(self, items: Iterable[Item]) -> tuple[list[Item], list[Item], list[Item]]:
        """(eligible lines, lines excluded by product, lines excluded by category)."""
        eligible: list[Item] = []
        by_product: list[Item] = []
        by_category: list[Item] = []
        for item in items:
            if item.product_id in self.excluded_product_ids:
                by_product.append(item)
            elif item.category_id is not None and item.category_id in self.excluded_category_ids:
                by_category.append(item)
            elif not self.has_inclusions or (
                item.product_id in self.product_ids
                or (item.variant_id is not None and item.variant_id in self.variant_ids)
                or (item.category_id is not None and item.category_id in self.category_ids)
            ):
                eligible.append(item)
        return eligible, by_product, by_category


@dataclass(frozen=True)
class Order:
    """What a coupon is asked to price: the subtotal, and the lines and shipping when sent."""

    subtotal: Decimal
    items: tuple[Item, ...] | None = None
    shipping_amount: Decimal | None = None

    @classmethod
    def of(
        cls,
        subtotal: Decimal | None,
        items: Iterable[Item] | None = None,
        shipping_amount: Decimal | None = None,
    ) -> Order:
        """With items, the subtotal is their sum; a different subtotal sent alongside is SUBTOTAL_MISMATCH."""
        lines = tuple(items) if items is not None else None
        if lines is not None:
            if not lines:
                raise InvalidCoupon("items", "must hold at least one line")
            total = sum((item.total for item in lines), ZERO).quantize(CENT)
            if total > MAX_AMOUNT:
                raise InvalidCoupon("items", f"the lines must not add up to more than {MAX_AMOUNT}")
            if subtotal is not None and subtotal != total:
                raise SubtotalMismatch(
                    f"The subtotal {format_amount(subtotal)} differs from the items' sum {format_amount(total)}.",
                    subtotal=format_amount(subtotal),
                    items_subtotal=format_amount(total),
                )
            subtotal = total
        if subtotal is None:
            raise InvalidCoupon("subtotal", "send subtotal or items")
        return cls(subtotal, lines, shipping_amount)

    def fingerprint(self) -> dict[str, Any]:
        """The order as an idempotent request's fingerprint holds it (only what was sent)."""
        request: dict[str, Any] = {"subtotal": str(self.subtotal)}
        if self.items is not None:
            request["items"] = [item.as_dict() for item in self.items]
        if self.shipping_amount is not None:
            request["shipping_amount"] = str(self.shipping_amount)
        return request


def as_order(order: Order | Decimal) -> Order:
    return order if isinstance(order, Order) else Order(order)


@dataclass(frozen=True)
class Quote:
    code: str
    original_subtotal: Decimal
    discount_amount: Decimal
    final_total: Decimal
    free_shipping: bool = False


# --- checks shared by creation and change -------------------------------------------------------


def check_discount(discount_type: str, discount_value: Decimal) -> None:
    if discount_type not in DISCOUNT_TYPES:
        raise InvalidCoupon("discount_type", f"must be one of {', '.join(DISCOUNT_TYPES)}")
    if discount_type == FREE_SHIPPING:
        if discount_value != 0:
            raise InvalidCoupon(
                "discount_value", "a free_shipping coupon takes no discount_value: its discount is the shipping"
            )
        return
    if discount_value <= 0:
        raise InvalidCoupon("discount_value", "must be greater than 0")
    if discount_type == PERCENTAGE and discount_value > HUNDRED:
        raise InvalidCoupon("discount_value", "a percentage must not exceed 100")


def check_terms(terms: Mapping[str, Any], discount_type: str) -> None:
    """The rules that tie a coupon's terms together, checked on creation and after every change."""
    max_uses = terms.get("max_uses")
    if max_uses is not None and max_uses < 1:
        raise InvalidCoupon("max_uses", "must be at least 1")
    per_customer = terms.get("max_uses_per_customer")
    if per_customer is not None and per_customer < 1:
        raise InvalidCoupon("max_uses_per_customer", "must be at least 1")
    cap = terms.get("max_discount_amount")
    if cap is not None:
        if discount_type != PERCENTAGE:
            raise InvalidCoupon("max_discount_amount", "caps a percentage discount only")
        if cap <= 0:
            raise InvalidCoupon("max_discount_amount", "must be greater than 0")
    starts_at, expires_at = terms.get("starts_at"), terms.get("expires_at")
    if starts_at is not None and expires_at is not None and expires_at <= starts_at:
        raise InvalidCoupon("expires_at", "must be later than starts_at")


class Unset:
    """A field a request did not send (as opposed to one sent as null)."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


# What counts as blank in a customer id: every character Python's str.isspace() or JSON Schema's
# (ECMAScript's) \s takes for whitespace, so that the API's published pattern and this check agree.
BLANK_CHARACTERS = frozenset(
    "\t\n\v\f\r \x1c\x1d\x1e\x1f\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)


def check_customer_id(customer_id: str | None) -> None:
    """A customer id, when sent, names someone: a blank one would count every anonymous order as
    one customer's, or (as no customer at all) escape the per-customer limit."""
    if customer_id is not None and all(c in BLANK_CHARACTERS for c in customer_id):
        raise InvalidCoupon("customer_id", "must not be empty or only whitespace")


def raise_immutable(name: str) -> None:
    raise FieldImmutable(f"{name} cannot be changed once a coupon is created.", field=name)
