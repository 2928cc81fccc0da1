"""The holds part of the log audit: every hold is one Reservation, Held once and then ended at most
once (confirmed, released or expired); a confirmed one's redemption exists and its coupon's Redeemed
names the hold; the holds each coupon, customer usage and campaign keeps open are exactly the
Reservations still held.

Only open holds are kept (a Reservation leaves memory when it ends); a hold's coupon-side and
Reservation-side events are matched as they come. Where an event makes no sense for what is kept
(a Reservation ended twice), its history is read back from the store to name what happened.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from ledger.domain import Coupon, Reservation, customer_usage_id_for
from projections.coupons import CONFIRMED, EXPIRED, RELEASED
from projections.verify.state import CampaignState, CouponState, Report, UsageState, add_hold
from projections.verify.store import EventStore

ENDED_STATUS = {Reservation.Confirmed: CONFIRMED, Reservation.Released: RELEASED, Reservation.Expired: EXPIRED}


class OpenHold(NamedTuple):
    """A Reservation still held: where its hold is recorded."""

    coupon: int
    usage: int | None
    campaign: int | None
    customer_id: str | None


class HoldAudit:
    report: Report
    store: EventStore
    coupons: dict[int, CouponState]
    usages: dict[int, UsageState]
    campaigns: dict[int, CampaignState]
    recorded: dict[UUID, Any]

    def violation(self, message: str) -> None:
        raise NotImplementedError

    def label(self, coupon: int) -> str:
        raise NotImplementedError

    def coupon(self, coupon: int) -> CouponState:
        raise NotImplementedError

    def check_coupon_limit(self, key: int, coupon: CouponState, at: datetime, what: str) -> None:
        raise NotImplementedError

    def __init__(self) -> None:
        self.open_holds: dict[int, OpenHold] = {}
        # A hold seen on one side only so far: reservation -> coupon (Coupon.Reserved / Reservation.Held).
        self.held_on_coupon_only: dict[int, int] = {}
        self.held_on_reservation_only: dict[int, int] = {}
        # A confirmation seen on one side only: reservation -> redemption (Redeemed / Reservation.Confirmed).
        self.confirmed_on_coupon_only: dict[int, UUID] = {}
        self.confirmed_on_reservation_only: dict[int, UUID] = {}

    def see_coupon_hold(self, event: Coupon.Reserved) -> None:
        key = event.originator_id.int
        coupon = self.coupon(key)
        reservation = event.reservation_id.int
        if coupon.holds is not None and reservation in coupon.holds:
            self.violation(f"{self.label(key)}: hold {event.reservation_id} is reserved more than once")
        held_on = self.held_on_reservation_only.pop(reservation, None)
        if held_on is None:
            self.held_on_coupon_only[reservation] = key
        elif held_on != key:
            self.violation(
                f"reservation {event.reservation_id} of coupon {UUID(int=held_on)} is held on coupon"
                f" {event.originator_id}"
            )
        coupon.holds = add_hold(coupon.holds, reservation, event.expires_at)
        what = f"hold {event.reservation_id} (version {event.originator_version})"
        self.check_coupon_limit(key, coupon, event.timestamp, what)

    def see_confirmed_on_coupon(self, reservation_id: UUID, redemption_id: UUID) -> None:
        key = reservation_id.int
        confirmed = self.confirmed_on_reservation_only.pop(key, None)
        if confirmed is None:
            earlier = self.confirmed_on_coupon_only.setdefault(key, redemption_id)
            if earlier != redemption_id:
                self.violation(
                    f"hold {reservation_id} is confirmed again on its coupon by redemption {redemption_id}"
                    f" (first by {earlier})"
                )
        elif confirmed != redemption_id:
            self.violation(
                f"reservation {reservation_id} is confirmed as redemption {confirmed}, but its coupon"
                f" redeemed it as {redemption_id}"
            )

    def see_reservation_held(self, event: Reservation.Held) -> None:
        key = event.originator_id.int
        coupon = event.coupon_id.int
        self.report.reservations += 1
        customer_id = event.customer_id
        usage = customer_usage_id_for(event.coupon_id, customer_id).int if customer_id is not None else None
        campaign = event.campaign_id.int if event.campaign_id is not None else None
        self.open_holds[key] = OpenHold(coupon, usage, campaign, customer_id)
        held_on = self.held_on_coupon_only.pop(key, None)
        if held_on is None:
            self.held_on_reservation_only[key] = coupon
        elif held_on != coupon:
            self.violation(
                f"reservation {event.originator_id} of coupon {event.coupon_id} is held on coupon {UUID(int=held_on)}"
            )

    def see_reservation_ended(self, event: Reservation.Confirmed | Reservation.Released | Reservation.Expired) -> None:
        reservation_id = event.originator_id
        status = ENDED_STATUS[type(event)]
        if isinstance(event, Reservation.Confirmed):
            if event.redemption_id not in self.recorded:
                self.violation(
                    f"reservation {reservation_id} is confirmed as redemption {event.redemption_id},"
                    " which is not recorded"
                )
            key = reservation_id.int
            on_coupon = self.confirmed_on_coupon_only.pop(key, None)
            if on_coupon is None:
                self.confirmed_on_reservation_only[key] = event.redemption_id
            elif on_coupon != event.redemption_id:
                self.violation(
                    f"reservation {reservation_id} is confirmed as redemption {event.redemption_id}, but its"
                    f" coupon redeemed it as {on_coupon}"
                )
        if self.open_holds.pop(reservation_id.int, None) is not None:
            return
        # Not held any more (or never): what came before, from the store.
        earlier = [
            e
            for e in self.store.streams([reservation_id]).get(reservation_id, [])
            if e.originator_version < event.originator_version
        ]
        if not any(isinstance(e, Reservation.Held) for e in earlier):
            self.violation(f"reservation {reservation_id} is {status} but was never held")
            return
        ends = [e for e in earlier if type(e) in ENDED_STATUS]
        if not ends:
            return
        last = ends[-1]
        if isinstance(event, Reservation.Confirmed) and isinstance(last, Reservation.Confirmed):
            self.violation(
                f"reservation {reservation_id} is confirmed more than once (redemptions"
                f" {last.redemption_id} and {event.redemption_id})"
            )
        elif not (status == CONFIRMED and ENDED_STATUS[type(last)] == CONFIRMED):
            self.violation(f"reservation {reservation_id} is {status} after it was {ENDED_STATUS[type(last)]}")

    def status_of(self, reservation: int) -> str:
        """A Reservation's status now (from the store unless it is still held), or 'missing'."""
        if reservation in self.open_holds:
            return "held"
        reservation_id = UUID(int=reservation)
        events = self.store.streams([reservation_id]).get(reservation_id, [])
        ends = [ENDED_STATUS[type(e)] for e in events if type(e) in ENDED_STATUS]
        if ends:
            return ends[-1]
        return "held" if events else "missing"

    def check_reservations(self) -> None:
        for reservation, coupon in sorted(self.held_on_reservation_only.items()):
            self.violation(f"reservation {UUID(int=reservation)} was never held on its coupon {UUID(int=coupon)}")
        for reservation, coupon in sorted(self.held_on_coupon_only.items()):
            self.violation(f"{self.label(coupon)} holds {UUID(int=reservation)}, which is no Reservation")
        for reservation, redemption_id in sorted(self.confirmed_on_coupon_only.items()):
            self.violation(
                f"redemption {redemption_id} confirms hold {UUID(int=reservation)}, whose Reservation is"
                f" {self.status_of(reservation)}"
            )
        for reservation, redemption_id in sorted(self.confirmed_on_reservation_only.items()):
            self.violation(
                f"reservation {UUID(int=reservation)} is confirmed as redemption {redemption_id}, but its coupon"
                " never redeemed it"
            )
        still = self.open_holds
        open_holds = {
            "coupon": (
                {r: str(UUID(int=c)) for c, state in self.coupons.items() if state.holds for r in state.holds},
                {r: str(UUID(int=h.coupon)) for r, h in still.items()},
            ),
            "customer usage": (
                {r: f"{UUID(int=u.coupon)}/{u.customer_id}" for u in self.usages.values() if u.holds for r in u.holds},
                {r: f"{UUID(int=h.coupon)}/{h.customer_id}" for r, h in still.items() if h.usage is not None},
            ),
            "campaign": (
                {r: str(UUID(int=c)) for c, state in self.campaigns.items() for r in state.holds},
                {r: str(UUID(int=h.campaign)) for r, h in still.items() if h.campaign is not None},
            ),
        }
        for what, (kept_open, expected) in open_holds.items():
            for reservation in sorted(kept_open.keys() | expected.keys()):
                if kept_open.get(reservation) == expected.get(reservation):
                    continue
                where = kept_open.get(reservation)
                self.violation(
                    f"hold {UUID(int=reservation)}: its Reservation is {self.status_of(reservation)}, but "
                    + (f"{what} {where} still holds it" if where else f"its {what} does not hold it")
                )
