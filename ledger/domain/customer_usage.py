"""One customer's uses and live holds of one coupon, for ``max_uses_per_customer``."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.clock import OneClock
from ledger.domain.values import customer_usage_id_for, live_holds, without


class CustomerUsage(Aggregate):
    """How many live uses one customer has made of one coupon (uses minus reversals), and the
    customer's live holds of it."""

    __module__ = "ledger.domain"  # keeps the stored topics: see ledger/domain/__init__.py

    # Version 2 added the holds; usages and snapshots stored before read with none.
    class_version = 2

    class Started(OneClock, Aggregate.Created):
        coupon_id: UUID
        customer_id: str

    class Used(OneClock, Aggregate.Event):
        class_version = 2
        redemption_id: UUID
        reservation_id: UUID | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reservation_id"] = None

    class Returned(OneClock, Aggregate.Event):
        redemption_id: UUID

    class Reserved(OneClock, Aggregate.Event):
        reservation_id: UUID
        expires_at: datetime

    class ReservationReleased(OneClock, Aggregate.Event):
        reservation_id: UUID

    class ReservationExpired(OneClock, Aggregate.Event):
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
