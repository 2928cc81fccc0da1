"""Bulk-generated codes sharing a budget: ``max_redemptions`` and ``max_discount_total``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.clock import OneClock
from ledger.domain.values import ZERO, without
from ledger.errors import CampaignBudgetExhausted
from ledger.money import format_amount


class Campaign(Aggregate):
    """Bulk-generated codes sharing one template and a campaign-wide budget. Every redemption of
    one of its coupons is recorded here too (in the same save), so the budget holds under any
    concurrency; so is every live hold (with the discount it holds)."""

    __module__ = "ledger.domain"  # keeps the stored topics: see ledger/domain/__init__.py

    # Version 2 added the holds; campaigns and snapshots stored before read with none.
    class_version = 2

    class Created(OneClock, Aggregate.Created):
        retailer_id: UUID
        name: str
        prefix: str
        count: int
        template: dict[str, Any]
        max_redemptions: int | None
        max_discount_total: Decimal | None

    class CodesGenerated(OneClock, Aggregate.Event):
        count: int

    class Used(OneClock, Aggregate.Event):
        class_version = 2
        redemption_id: UUID
        discount_amount: Decimal
        reservation_id: UUID | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reservation_id"] = None

    class Returned(OneClock, Aggregate.Event):
        redemption_id: UUID
        discount_amount: Decimal

    class Reserved(OneClock, Aggregate.Event):
        reservation_id: UUID
        discount_amount: Decimal
        expires_at: datetime

    class ReservationReleased(OneClock, Aggregate.Event):
        reservation_id: UUID

    class ReservationExpired(OneClock, Aggregate.Event):
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
