"""A coupon: its terms, its derived status, pricing an order, and its uses and live holds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.clock import OneClock
from ledger.domain.values import (
    ACTIVE,
    COUNT_EXPIRED,
    FREE_SHIPPING,
    IMMUTABLE_FIELDS,
    INACTIVE,
    MUTABLE_FIELDS,
    PERCENTAGE,
    SCHEDULED,
    TIME_EXPIRED,
    TRANSITIONS,
    UNSET,
    ZERO,
    Order,
    Quote,
    Scope,
    Unset,
    as_order,
    check_terms,
    coupon_id_for,
    live_holds,
    raise_immutable,
    without,
)
from ledger.errors import (
    CouponExpired,
    CouponInactive,
    CouponNotApplicable,
    CouponNotStarted,
    CustomerIdRequired,
    CustomerLimitReached,
    InvalidCoupon,
    InvalidTransition,
    MinOrderNotMet,
    UsageLimitReached,
)
from ledger.money import CENT, format_amount, percentage_of
from ledger.timestamps import format_timestamp

if TYPE_CHECKING:
    from ledger.domain.campaign import Campaign
    from ledger.domain.customer_usage import CustomerUsage
    from ledger.domain.reservation import Reservation


CREATED_V2_DEFAULTS: dict[str, Any] = {
    "starts_at": None,
    "max_uses_per_customer": None,
    "max_discount_amount": None,
    "scope": None,
    "public": False,
    "campaign_id": None,
}


class Coupon(Aggregate):
    __module__ = "ledger.domain"  # keeps the stored topics: see ledger/domain/__init__.py

    # Version 2 added the time window, per-customer limit, discount cap, scope, public flag,
    # campaign and archiving; version 3 the live holds. Coupons and snapshots stored before read
    # with their defaults.
    class_version = 3

    class Created(OneClock, Aggregate.Created):
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

    class Updated(OneClock, Aggregate.Event):
        """PATCH: ``changes`` maps each changed field to its new value (None removes it)."""

        changes: dict[str, Any]

    class Deactivated(OneClock, Aggregate.Event):
        pass

    class Activated(OneClock, Aggregate.Event):
        pass

    class Archived(OneClock, Aggregate.Event):
        pass

    class Redeemed(OneClock, Aggregate.Event):
        """A use. ``reservation_id``: the hold it confirms (that hold ends with it), or None;
        ``customer_id``: the customer's, where one was sent (version 3 on; None before)."""

        class_version = 3
        redemption_id: UUID
        original_subtotal: Decimal
        discount_amount: Decimal
        final_total: Decimal
        order_id: str | None
        reservation_id: UUID | None
        customer_id: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reservation_id"] = None

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["customer_id"] = None

    class Reserved(OneClock, Aggregate.Event):
        """A hold of one use until ``expires_at``: it counts against max_uses until then."""

        reservation_id: UUID
        expires_at: datetime

    class ReservationReleased(OneClock, Aggregate.Event):
        reservation_id: UUID

    class ReservationExpired(OneClock, Aggregate.Event):
        reservation_id: UUID

    class RedemptionReversed(OneClock, Aggregate.Event):
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
            customer_id=customer_id,
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
            customer_id=reservation.customer_id,
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
        customer_id: str | None,
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
