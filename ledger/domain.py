"""The aggregates and the rules a redemption must pass.

- ``Coupon``: its terms, whether it is active or archived, and a count of its uses.
- ``Redemption``: one use of a coupon (its id is derived from the idempotency key when there is
  one, so the store itself rejects a repeated key); it may be reversed once.
- ``CustomerUsage``: one customer's uses of one coupon, for ``max_uses_per_customer``.
- ``Campaign``: bulk-generated codes sharing a budget (``max_redemptions``, ``max_discount_total``).
- ``Reservation``: a hold of one use during a checkout; while live it counts against every limit
  like a use (the coupon, the customer's usage and the campaign keep their live holds).

A redemption changes its coupon, creates its Redemption and, where they apply, changes the
customer's usage and the campaign, all in the same ``save()``: the store's version checks then
make every limit hold across processes. Nothing in an aggregate grows with its history.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger.errors import (
    CampaignBudgetExhausted,
    CouponExpired,
    CouponInactive,
    CouponNotApplicable,
    CouponNotStarted,
    CustomerIdRequired,
    CustomerLimitReached,
    FieldImmutable,
    InvalidCoupon,
    InvalidTransition,
    MinOrderNotMet,
    SubtotalMismatch,
    UsageLimitReached,
)
from ledger.money import CENT, HUNDRED, MAX_AMOUNT, format_amount, percentage_of
from ledger.timestamps import format_timestamp

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


# --- aggregates ---------------------------------------------------------------------------------


class Coupon(Aggregate):
    # Version 2 added the time window, per-customer limit, discount cap, scope, public flag,
    # campaign and archiving; version 3 the live holds. Coupons and snapshots stored before read
    # with their defaults.
    class_version = 3

    class Created(Aggregate.Created):
        class_version = 2
        retailer_id: UUID
        code: str
        discount_type: str
        discount_value: Decimal
        min_order_value: Decimal | None
        expires_at: datetime | None
        max_uses: int | None
        is_active: bool
        starts_at: datetime | None
        max_uses_per_customer: int | None
        max_discount_amount: Decimal | None
        scope: dict[str, list[str]] | None
        public: bool
        campaign_id: UUID | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.update(CREATED_V2_DEFAULTS)

    class Updated(Aggregate.Event):
        """PATCH: ``changes`` maps each changed field to its new value (None removes it)."""

        changes: dict[str, Any]

    class Deactivated(Aggregate.Event):
        pass

    class Activated(Aggregate.Event):
        pass

    class Archived(Aggregate.Event):
        pass

    class Redeemed(Aggregate.Event):
        """A use. ``reservation_id``: the hold it confirms (that hold ends with it), or None."""

        class_version = 2
        redemption_id: UUID
        original_subtotal: Decimal
        discount_amount: Decimal
        final_total: Decimal
        order_id: str | None
        reservation_id: UUID | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reservation_id"] = None

    class Reserved(Aggregate.Event):
        """A hold of one use until ``expires_at``: it counts against max_uses until then."""

        reservation_id: UUID
        expires_at: datetime

    class ReservationReleased(Aggregate.Event):
        reservation_id: UUID

    class ReservationExpired(Aggregate.Event):
        reservation_id: UUID

    class RedemptionReversed(Aggregate.Event):
        redemption_id: UUID
        discount_amount: Decimal
        reason: str | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state.update(CREATED_V2_DEFAULTS)
        state["archived"] = False

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        state["holds"] = {}

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
        starts_at: datetime | None = None,
        max_uses_per_customer: int | None = None,
        max_discount_amount: Decimal | None = None,
        scope: dict[str, list[str]] | None = None,
        public: bool = False,
        campaign_id: UUID | None = None,
    ) -> None:
        self.retailer_id = retailer_id
        self.code = code
        self.discount_type = discount_type
        self.discount_value = discount_value
        self.min_order_value = min_order_value
        self.expires_at = expires_at
        self.max_uses = max_uses
        self.is_active = is_active
        self.starts_at = starts_at
        self.max_uses_per_customer = max_uses_per_customer
        self.max_discount_amount = max_discount_amount
        self.scope = scope
        self.public = public
        self.campaign_id = campaign_id
        self.archived = False
        self.uses_count = 0
        # The live holds: reservation id (text) -> expires_at. Ended holds leave it, so it never
        # grows with the coupon's history.
        self.holds: dict[str, datetime] = {}

    # --- changes ---------------------------------------------------------------------------------

    def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change the mutable terms; returns what actually changed (no event if nothing did)."""
        for name in changes:
            if name in IMMUTABLE_FIELDS:
                raise_immutable(name)
            if name not in MUTABLE_FIELDS:
                raise InvalidCoupon(name, "is not a field that can be changed")
        wanted = dict(changes)
        if "scope" in wanted:
            scope = Scope.of(wanted["scope"])
            wanted["scope"] = scope.as_dict() if scope is not None else None
        changed = {name: value for name, value in wanted.items() if getattr(self, name) != value}
        if not changed:
            return {}
        check_terms({**self.terms(), **changed}, self.discount_type)
        self._update(changes=changed)
        return changed

    @event(Updated)
    def _update(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            setattr(self, name, value)

    @event(Deactivated)
    def deactivate(self) -> None:
        self.is_active = False

    @event(Activated)
    def activate(self) -> None:
        self.is_active = True

    @event(Archived)
    def archive(self) -> None:
        self.archived = True

    def transition(self, name: str, now: datetime, expires_at: datetime | Unset | None = UNSET) -> None:
        """Fire one of the platform's state-machine events; the new status is derived as always.

        ``expires_at`` is UNSET when not sent (None removes the expiry)."""
        status = self.status(now)
        allowed = TRANSITIONS.get(name)
        if allowed is None:
            raise InvalidCoupon("event", f"must be one of {', '.join(TRANSITIONS)}")
        if status not in allowed:
            raise InvalidTransition(
                f"Coupon {self.code} is {status}: the event {name} is not allowed from {status}.",
                event=name,
                status=status,
                allowed_events=sorted(e for e, sources in TRANSITIONS.items() if status in sources),
            )
        if name == "deactivate":
            self.deactivate()
        elif name == "activate":
            self.set_active(now, expires_at, usable=True)
        elif name == "extend_expiry_and_activate":
            if isinstance(expires_at, Unset):
                raise InvalidCoupon("expires_at", "is required by extend_expiry_and_activate")
            self.set_active(now, expires_at)
        elif name == "reconcile_count_status" and status == INACTIVE and self.is_used_up(now):
            # The status is derived from the count, so it is always reconciled; an inactive
            # coupon whose uses reached its limit moves on to count_expired (the diagram's arrow).
            self.activate()

    def set_active(self, now: datetime, expires_at: datetime | Unset | None = UNSET, usable: bool = False) -> None:
        """Activate, with a new expiry when one is sent (None: no expiry). With ``usable`` (the
        state machine's activate: its arrow leads to active), a coupon whose expiry has passed
        needs a new one: activating it without one would leave it time_expired."""
        if not isinstance(expires_at, Unset):
            if expires_at is not None and expires_at <= now:
                raise InvalidCoupon("expires_at", "must be in the future to activate the coupon")
            self.update({"expires_at": expires_at})
        elif usable and self.is_expired(now):
            assert self.expires_at is not None
            raise InvalidCoupon(
                "expires_at",
                f"the coupon expired at {format_timestamp(self.expires_at)}: send a later expires_at "
                "(or null for no expiry) to activate it",
            )
        if not self.is_active:
            self.activate()

    # --- state -----------------------------------------------------------------------------------

    def terms(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in MUTABLE_FIELDS}

    @property
    def scope_rules(self) -> Scope | None:
        return Scope.of(self.scope)

    def status(self, now: datetime) -> str:
        if not self.is_active:
            return INACTIVE
        if self.starts_at is not None and now < self.starts_at:
            return SCHEDULED
        if self.is_expired(now):
            return TIME_EXPIRED
        if self.is_used_up(now):
            return COUNT_EXPIRED
        return ACTIVE

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def held(self, now: datetime) -> int:
        """Live holds: a hold past its expires_at stops counting at once, recorded or not."""
        return live_holds(self.holds, now) if self.holds else 0

    def is_used_up(self, now: datetime) -> bool:
        """Uses and live holds together have reached max_uses."""
        return self.max_uses is not None and self.uses_count + self.held(now) >= self.max_uses

    # --- pricing and redeeming -------------------------------------------------------------------

    def quote(
        self,
        order: Order | Decimal,
        now: datetime,
        customer_id: str | None = None,
        usage: CustomerUsage | None = None,
        campaign: Campaign | None = None,
    ) -> Quote:
        """Price an order with this coupon, or raise the first rule it breaks, in the documented
        order: active, started, not expired, total limit, per-customer limit, campaign budget,
        minimum order, scope (and the campaign's discount budget once the discount is known)."""
        order = as_order(order)
        self.check_is_active()
        self.check_has_started(now)
        self.check_is_not_expired(now)
        self.check_uses_remain(now)
        self.check_customer_may_use(customer_id, usage, now)
        if campaign is not None:
            campaign.check_budget_left(now)
        self.check_minimum_order_met(order.subtotal)
        discount = self.discount_on(order)
        if campaign is not None:
            campaign.check_discount_fits(discount, now)
        free_shipping = self.discount_type == FREE_SHIPPING
        return Quote(self.code, order.subtotal, discount, order.subtotal - discount, free_shipping)

    def discount_on(self, order: Order | Decimal) -> Decimal:
        order = as_order(order)
        base = self.eligible_subtotal(order)
        if self.discount_type == FREE_SHIPPING:
            # The shipping is part of what the order costs; like any discount it never takes the
            # total below zero.
            return min(order.shipping_amount or ZERO, order.subtotal).quantize(CENT)
        if self.discount_type == PERCENTAGE:
            discount = percentage_of(base, self.discount_value)
            if self.max_discount_amount is not None:
                discount = min(discount, self.max_discount_amount)
            return discount.quantize(CENT)
        return min(self.discount_value, base).quantize(CENT)

    def eligible_subtotal(self, order: Order) -> Decimal:
        """The part of the order the coupon discounts: every line without a scope, the eligible
        lines with one; COUPON_NOT_APPLICABLE when nothing is eligible."""
        scope = self.scope_rules
        if scope is None:
            return order.subtotal
        if order.items is None:
            raise CouponNotApplicable(
                f"Coupon {self.code} applies to some items only: send the order's items.",
                reason="no_eligible_items",
            )
        eligible, by_product, by_category = scope.eligible(order.items)
        if not eligible:
            if by_product:
                raise CouponNotApplicable(
                    f"Coupon {self.code} does not apply to the products in this order.",
                    reason="product_excluded",
                    product_ids=sorted({i.product_id for i in by_product}),
                )
            if by_category:
                raise CouponNotApplicable(
                    f"Coupon {self.code} does not apply to the categories in this order.",
                    reason="category_excluded",
                    product_ids=sorted({i.product_id for i in by_category}),
                    category_ids=sorted({i.category_id for i in by_category if i.category_id is not None}),
                )
            raise CouponNotApplicable(
                f"Coupon {self.code} applies to none of the items in this order.", reason="no_eligible_items"
            )
        return sum((item.total for item in eligible), ZERO).quantize(CENT)

    def redeem(
        self,
        redemption_id: UUID,
        order: Order | Decimal,
        now: datetime,
        order_id: str | None,
        customer_id: str | None = None,
        usage: CustomerUsage | None = None,
        campaign: Campaign | None = None,
    ) -> Quote:
        """Redeem: check and price the order, record the use on this coupon and, when given, on
        the customer's usage and the campaign (the caller saves them all together)."""
        quote = self.quote(order, now, customer_id, usage, campaign)
        self._record_redemption(
            redemption_id=redemption_id,
            original_subtotal=quote.original_subtotal,
            discount_amount=quote.discount_amount,
            final_total=quote.final_total,
            order_id=order_id,
            reservation_id=None,
        )
        if usage is not None:
            usage.use(redemption_id, None)
        if campaign is not None:
            campaign.use(redemption_id, quote.discount_amount, None)
        return quote

    def reserve(
        self,
        reservation_id: UUID,
        order: Order | Decimal,
        now: datetime,
        expires_at: datetime,
        customer_id: str | None = None,
        usage: CustomerUsage | None = None,
        campaign: Campaign | None = None,
    ) -> Quote:
        """Hold one use until ``expires_at``: the same checks as a redemption (holds counting),
        recorded on this coupon and, when given, the customer's usage and the campaign."""
        quote = self.quote(order, now, customer_id, usage, campaign)
        self._record_hold(reservation_id=reservation_id, expires_at=expires_at)
        if usage is not None:
            usage.hold(reservation_id, expires_at)
        if campaign is not None:
            campaign.hold(reservation_id, quote.discount_amount, expires_at)
        return quote

    def confirm_hold(self, reservation: Reservation, redemption_id: UUID, order_id: str | None) -> None:
        """Turn a live hold into a use, at the price it was held at (the hold was the check)."""
        self._record_redemption(
            redemption_id=redemption_id,
            original_subtotal=reservation.original_subtotal,
            discount_amount=reservation.discount_amount,
            final_total=reservation.final_total,
            order_id=order_id,
            reservation_id=reservation.id,
        )

    @event(Redeemed)
    def _record_redemption(
        self,
        redemption_id: UUID,
        original_subtotal: Decimal,
        discount_amount: Decimal,
        final_total: Decimal,
        order_id: str | None,
        reservation_id: UUID | None,
    ) -> None:
        self.uses_count += 1
        if reservation_id is not None:
            self.holds = without(self.holds, reservation_id)

    @event(Reserved)
    def _record_hold(self, reservation_id: UUID, expires_at: datetime) -> None:
        self.holds = {**self.holds, str(reservation_id): expires_at}

    @event(ReservationReleased)
    def release_hold(self, reservation_id: UUID) -> None:
        self.holds = without(self.holds, reservation_id)

    @event(ReservationExpired)
    def expire_hold(self, reservation_id: UUID) -> None:
        self.holds = without(self.holds, reservation_id)

    @event(RedemptionReversed)
    def reverse_redemption(self, redemption_id: UUID, discount_amount: Decimal, reason: str | None) -> None:
        self.uses_count -= 1

    # --- the rules, one by one ---------------------------------------------------------------------

    def check_is_active(self) -> None:
        if not self.is_active:
            raise CouponInactive(f"Coupon {self.code} is not active.")

    def check_has_started(self, now: datetime) -> None:
        if self.starts_at is not None and now < self.starts_at:
            raise CouponNotStarted(
                f"Coupon {self.code} starts at {format_timestamp(self.starts_at)}.",
                starts_at=format_timestamp(self.starts_at),
            )

    def check_is_not_expired(self, now: datetime) -> None:
        if self.is_expired(now):
            assert self.expires_at is not None
            raise CouponExpired(
                f"Coupon {self.code} expired at {format_timestamp(self.expires_at)}.",
                expired_at=format_timestamp(self.expires_at),
            )

    def check_uses_remain(self, now: datetime) -> None:
        if self.is_used_up(now):
            held = self.held(now)
            raise UsageLimitReached(
                f"Coupon {self.code} has reached its usage limit of {self.max_uses}"
                + (f" ({held} of them held by checkouts in progress)." if held else "."),
                max_uses=self.max_uses,
                **({"held": held} if held else {}),
            )

    def check_customer_may_use(
        self, customer_id: str | None, usage: CustomerUsage | None, now: datetime | None = None
    ) -> None:
        limit = self.max_uses_per_customer
        if limit is None:
            return
        if customer_id is None:
            raise CustomerIdRequired(
                f"Coupon {self.code} can be used {limit} time(s) per customer: send customer_id.",
                max_uses_per_customer=limit,
            )
        held = usage.held(now) if usage is not None and now is not None else 0
        if usage is not None and usage.uses + held >= limit:
            raise CustomerLimitReached(
                f"Customer {customer_id} has used coupon {self.code} {usage.uses} time(s)"
                + (f" and holds it {held} time(s)" if held else "")
                + f", the limit is {limit}.",
                customer_id=customer_id,
                max_uses_per_customer=limit,
                uses=usage.uses,
                **({"held": held} if held else {}),
            )

    def check_minimum_order_met(self, subtotal: Decimal) -> None:
        if self.min_order_value is not None and subtotal < self.min_order_value:
            raise MinOrderNotMet(
                f"Order subtotal {format_amount(subtotal)} is below the minimum "
                f"{format_amount(self.min_order_value)} for {self.code}.",
                required_minimum=format_amount(self.min_order_value),
                subtotal=format_amount(subtotal),
            )


CREATED_V2_DEFAULTS: dict[str, Any] = {
    "starts_at": None,
    "max_uses_per_customer": None,
    "max_discount_amount": None,
    "scope": None,
    "public": False,
    "campaign_id": None,
}


class Redemption(Aggregate):
    """One use of a coupon. Keyed redemptions get an id derived from the key, so the
    store refuses a second redemption under the same key. Reversed at most once."""

    class Recorded(Aggregate.Created):
        class_version = 2
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
        customer_id: str | None
        campaign_id: UUID | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["customer_id"] = None
            state["campaign_id"] = None

    class Reversed(Aggregate.Event):
        reason: str | None
        reversed_at: datetime

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
        customer_id: str | None = None,
        campaign_id: UUID | None = None,
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
        self.customer_id = customer_id
        self.campaign_id = campaign_id
        self.reversed_at: datetime | None = None
        self.reversal_reason: str | None = None

    @event(Reversed)
    def reverse(self, reason: str | None, reversed_at: datetime) -> None:
        self.reversed_at = reversed_at
        self.reversal_reason = reason

    @property
    def is_reversed(self) -> bool:
        return self.reversed_at is not None

    def quote(self) -> Quote:
        return Quote(self.code, self.original_subtotal, self.discount_amount, self.final_total, self.free_shipping)


class Reservation(Aggregate):
    """A hold of one use of a coupon until ``expires_at``, at the price it was checked at.

    held -> confirmed (a Redemption; the use is counted as the hold ends), released (given back),
    or expired (its TTL passed; recorded afterwards by the sweeper, but it stops counting at
    expires_at whether recorded or not)."""

    class Held(Aggregate.Created):
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
        customer_id: str | None
        campaign_id: UUID | None
        expires_at: datetime

    class Confirmed(Aggregate.Event):
        redemption_id: UUID
        order_id: str | None

    class Released(Aggregate.Event):
        pass

    class Expired(Aggregate.Event):
        pass

    @event(Held)
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
        customer_id: str | None,
        campaign_id: UUID | None,
        expires_at: datetime,
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
        self.customer_id = customer_id
        self.campaign_id = campaign_id
        self.expires_at = expires_at
        self.status = RESERVATION_HELD
        self.redemption_id: UUID | None = None

    @property
    def ended_at(self) -> datetime | None:
        """When it was confirmed, released or its expiry recorded (its last event: nothing follows an end)."""
        return None if self.status == RESERVATION_HELD else self.modified_on

    def is_live(self, now: datetime) -> bool:
        return self.status == RESERVATION_HELD and now < self.expires_at

    def is_past_ttl(self, now: datetime) -> bool:
        """Still marked held, but its TTL has passed: it no longer counts, its expiry is not recorded yet."""
        return self.status == RESERVATION_HELD and now >= self.expires_at

    def quote(self) -> Quote:
        return Quote(self.code, self.original_subtotal, self.discount_amount, self.final_total, self.free_shipping)

    @event(Confirmed)
    def confirm(self, redemption_id: UUID, order_id: str | None) -> None:
        self.status = RESERVATION_CONFIRMED
        self.redemption_id = redemption_id
        if order_id is not None:
            self.order_id = order_id

    @event(Released)
    def release(self) -> None:
        self.status = RESERVATION_RELEASED

    @event(Expired)
    def expire(self) -> None:
        self.status = RESERVATION_EXPIRED


class CustomerUsage(Aggregate):
    """How many live uses one customer has made of one coupon (uses minus reversals), and the
    customer's live holds of it."""

    # Version 2 added the holds; usages and snapshots stored before read with none.
    class_version = 2

    class Started(Aggregate.Created):
        coupon_id: UUID
        customer_id: str

    class Used(Aggregate.Event):
        class_version = 2
        redemption_id: UUID
        reservation_id: UUID | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reservation_id"] = None

    class Returned(Aggregate.Event):
        redemption_id: UUID

    class Reserved(Aggregate.Event):
        reservation_id: UUID
        expires_at: datetime

    class ReservationReleased(Aggregate.Event):
        reservation_id: UUID

    class ReservationExpired(Aggregate.Event):
        reservation_id: UUID

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["holds"] = {}

    @staticmethod
    def create_id(coupon_id: UUID, customer_id: str) -> UUID:
        return customer_usage_id_for(coupon_id, customer_id)

    @event(Started)
    def __init__(self, coupon_id: UUID, customer_id: str) -> None:
        self.coupon_id = coupon_id
        self.customer_id = customer_id
        self.uses = 0
        self.holds: dict[str, datetime] = {}

    def held(self, now: datetime) -> int:
        return live_holds(self.holds, now) if self.holds else 0

    @event(Used)
    def use(self, redemption_id: UUID, reservation_id: UUID | None) -> None:
        self.uses += 1
        if reservation_id is not None:
            self.holds = without(self.holds, reservation_id)

    @event(Returned)
    def give_back(self, redemption_id: UUID) -> None:
        self.uses -= 1

    @event(Reserved)
    def hold(self, reservation_id: UUID, expires_at: datetime) -> None:
        self.holds = {**self.holds, str(reservation_id): expires_at}

    @event(ReservationReleased)
    def release_hold(self, reservation_id: UUID) -> None:
        self.holds = without(self.holds, reservation_id)

    @event(ReservationExpired)
    def expire_hold(self, reservation_id: UUID) -> None:
        self.holds = without(self.holds, reservation_id)


class Campaign(Aggregate):
    """Bulk-generated codes sharing one template and a campaign-wide budget. Every redemption of
    one of its coupons is recorded here too (in the same save), so the budget holds under any
    concurrency; so is every live hold (with the discount it holds)."""

    # Version 2 added the holds; campaigns and snapshots stored before read with none.
    class_version = 2

    class Created(Aggregate.Created):
        retailer_id: UUID
        name: str
        prefix: str
        count: int
        template: dict[str, Any]
        max_redemptions: int | None
        max_discount_total: Decimal | None

    class CodesGenerated(Aggregate.Event):
        count: int

    class Used(Aggregate.Event):
        class_version = 2
        redemption_id: UUID
        discount_amount: Decimal
        reservation_id: UUID | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reservation_id"] = None

    class Returned(Aggregate.Event):
        redemption_id: UUID
        discount_amount: Decimal

    class Reserved(Aggregate.Event):
        reservation_id: UUID
        discount_amount: Decimal
        expires_at: datetime

    class ReservationReleased(Aggregate.Event):
        reservation_id: UUID

    class ReservationExpired(Aggregate.Event):
        reservation_id: UUID

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["holds"] = {}
        state["held_discounts"] = {}

    @event(Created)
    def __init__(
        self,
        id: UUID,  # noqa: A002 - the library takes an explicit aggregate id by this name
        retailer_id: UUID,
        name: str,
        prefix: str,
        count: int,
        template: dict[str, Any],
        max_redemptions: int | None,
        max_discount_total: Decimal | None,
    ) -> None:
        self.retailer_id = retailer_id
        self.name = name
        self.prefix = prefix
        self.count = count
        self.template = template
        self.max_redemptions = max_redemptions
        self.max_discount_total = max_discount_total
        self.generated = 0
        self.redemptions = 0
        self.discount_total = ZERO
        # Live holds: reservation id (text) -> expires_at, and -> the discount it holds.
        self.holds: dict[str, datetime] = {}
        self.held_discounts: dict[str, Decimal] = {}

    @event(CodesGenerated)
    def codes_generated(self, count: int) -> None:
        self.generated += count

    @event(Used)
    def use(self, redemption_id: UUID, discount_amount: Decimal, reservation_id: UUID | None) -> None:
        self.redemptions += 1
        self.discount_total += discount_amount
        if reservation_id is not None:
            self._end_hold(reservation_id)

    @event(Reserved)
    def hold(self, reservation_id: UUID, discount_amount: Decimal, expires_at: datetime) -> None:
        self.holds = {**self.holds, str(reservation_id): expires_at}
        self.held_discounts = {**self.held_discounts, str(reservation_id): discount_amount}

    @event(ReservationReleased)
    def release_hold(self, reservation_id: UUID) -> None:
        self._end_hold(reservation_id)

    @event(ReservationExpired)
    def expire_hold(self, reservation_id: UUID) -> None:
        self._end_hold(reservation_id)

    def _end_hold(self, reservation_id: UUID) -> None:
        self.holds = without(self.holds, reservation_id)
        self.held_discounts = without(self.held_discounts, reservation_id)

    def held(self, now: datetime) -> tuple[int, Decimal]:
        """The live holds: how many, and the discount they hold together."""
        if not self.holds:
            return 0, ZERO
        live = [key for key, expires_at in self.holds.items() if now < expires_at]
        return len(live), sum((Decimal(self.held_discounts[key]) for key in live), ZERO)

    @event(Returned)
    def give_back(self, redemption_id: UUID, discount_amount: Decimal) -> None:
        self.redemptions -= 1
        self.discount_total -= discount_amount

    def check_budget_left(self, now: datetime) -> None:
        held, held_discount = self.held(now)
        if self.max_redemptions is not None and self.redemptions + held >= self.max_redemptions:
            raise CampaignBudgetExhausted(
                f"Campaign {self.name} has reached its limit of {self.max_redemptions} redemptions"
                + (f" ({held} of them held by checkouts in progress)." if held else "."),
                campaign_id=str(self.id),
                max_redemptions=self.max_redemptions,
                redemptions=self.redemptions,
                **({"held": held} if held else {}),
            )
        if self.max_discount_total is not None and self.discount_total + held_discount >= self.max_discount_total:
            self._exhausted_by_discount(None, held_discount)

    def check_discount_fits(self, discount: Decimal, now: datetime) -> None:
        _, held_discount = self.held(now)
        committed = self.discount_total + held_discount
        if self.max_discount_total is not None and committed + discount > self.max_discount_total:
            self._exhausted_by_discount(discount, held_discount)

    def _exhausted_by_discount(self, discount: Decimal | None, held_discount: Decimal) -> None:
        assert self.max_discount_total is not None
        remaining = max(self.max_discount_total - self.discount_total - held_discount, ZERO)
        details: dict[str, Any] = {
            "campaign_id": str(self.id),
            "max_discount_total": format_amount(self.max_discount_total),
            "discount_total": format_amount(self.discount_total),
            "remaining": format_amount(remaining),
        }
        if held_discount:
            details["held_discount"] = format_amount(held_discount)
        if discount is not None:
            details["discount_amount"] = format_amount(discount)
        raise CampaignBudgetExhausted(
            f"Campaign {self.name} has {format_amount(remaining)} of its discount budget "
            f"{format_amount(self.max_discount_total)} left.",
            **details,
        )
