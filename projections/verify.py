"""Check the ledger's invariants against the database; name every violation.

One pass over the event log, in notification order (the order the writers decided in), checks:

- every redemption: final_total = original_subtotal - discount_amount >= 0; recorded on its coupon
  (Coupon.Redeemed) and as itself (Redemption.Recorded);
- per coupon: its live uses (Redeemed - RedemptionReversed) never above max_uses as it stood when
  each redemption was made (a PATCH may lower max_uses below the uses made: no violation);
- reversals: every Coupon.RedemptionReversed gives back a redemption of that coupon, for the same
  discount, and matches that redemption's own Redemption.Reversed; none is reversed twice;
- per customer: no redemption took a customer past the per-customer limit in force, and each
  CustomerUsage holds that customer's live redemptions of the coupon;
- per campaign: live redemptions and the sum of their discounts never above max_redemptions and
  max_discount_total, and the Campaign's counters equal what its live redemptions add up to;
- checkout: a coupon redeemed at checkout has its order;
- the read model: uses_count = Redeemed - RedemptionReversed through its tracking position.

And for holds (issue 8):

- limits with holds: after each Coupon.Reserved, and each Redeemed that is not the confirmation
  of a hold still live, live uses + live holds (as of that event's time) never above max_uses as
  it stood; likewise per customer (CustomerUsage) and per campaign (Campaign, both counts and
  discounts). A confirmation turns a live hold into a use: it changes no count;
- every hold is one Reservation: Held once, then ended at most once (confirmed, released or
  expired); a confirmed one's redemption exists (Redemption.Recorded) and its coupon's Redeemed
  names the hold; every hold on a coupon, customer usage and campaign is a Reservation's, and the
  holds each still has open are exactly the Reservations still held;
- the read model: each `reservations` row equals its Reservation through the tracking position.

"Live at an event" compares a hold's expires_at with the event's timestamp, which the library
takes from the system clock a moment after the writer read its own clock to decide: a hold the
writer counted is counted here too, or is already past. (A ledger run on an injected clock ahead
of the system's, as some tests do, makes holds it saw as expired look live here.)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from ledger.application import CouponLedger
from ledger.domain import Campaign, Coupon, CustomerUsage, Redemption, Reservation
from ledger.handlers import order_redemption_id_for
from projections.coupons import CONFIRMED, EXPIRED, HELD, RELEASED, CouponsView, ReservationRow

ZERO = Decimal("0.00")


@dataclass(slots=True)
class Report:
    coupons: int = 0
    redemptions: int = 0
    reversals: int = 0
    reservations: int = 0
    projected_through: int = 0
    head: int = 0
    violations: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CouponAudit:
    code: str
    max_uses: int | None
    max_uses_per_customer: int | None
    live: int = 0  # Redeemed - RedemptionReversed so far
    live_in_view: int = 0  # the same, through the read model's tracking position
    holds: dict[UUID, datetime] = field(default_factory=dict)  # open holds: reservation id -> expires_at

    def label(self, coupon_id: UUID) -> str:
        return f"coupon {self.code} ({coupon_id})"


@dataclass(slots=True)
class UsageAudit:
    coupon_id: UUID
    customer_id: str
    uses: int = 0  # Used - Returned so far
    holds: dict[UUID, datetime] = field(default_factory=dict)


@dataclass(slots=True)
class CampaignAudit:
    name: str
    max_redemptions: int | None
    max_discount_total: Decimal | None
    redemptions: int = 0  # Used - Returned so far
    discount_total: Decimal = ZERO
    holds: dict[UUID, tuple[datetime, Decimal]] = field(default_factory=dict)  # -> (expires_at, discount)

    def label(self, campaign_id: UUID) -> str:
        return f"campaign {self.name} ({campaign_id})"


@dataclass(slots=True)
class RedemptionAudit:
    coupon_id: UUID
    customer_id: str | None
    campaign_id: UUID | None
    discount_amount: Decimal
    reversals: int = 0  # Redemption.Reversed events


@dataclass(slots=True)
class ReservationAudit:
    """A Reservation as its events build it, and as the read model should hold it (the same
    fields through the tracking position)."""

    held: ReservationRow  # the row as Reservation.Held made it
    status: str = HELD
    ended_at: datetime | None = None
    redemption_id: UUID | None = None
    endings: int = 0  # Confirmed, Released and Expired events
    confirmations: int = 0
    in_view: ReservationRow | None = None  # the row the read model should hold (None: not projected yet)

    def row(self) -> ReservationRow:
        return ReservationRow(
            **{
                **{name: getattr(self.held, name) for name in ReservationRow.__dataclass_fields__},
                "status": self.status,
                "ended_at": self.ended_at,
                "redemption_id": self.redemption_id,
            }
        )


def live_holds(holds: dict[UUID, datetime], at: datetime) -> int:
    return sum(1 for expires_at in holds.values() if at < expires_at)


ENDED_STATUS = {Reservation.Confirmed: CONFIRMED, Reservation.Released: RELEASED, Reservation.Expired: EXPIRED}


class Audit:
    """The state the checks need, built from the log one event at a time; nothing per event but
    one entry per coupon, customer usage, campaign and redemption."""

    def __init__(self, report: Report, position: int) -> None:
        self.report = report
        self.position = position  # the read model's tracking position
        self.coupons: dict[UUID, CouponAudit] = {}
        self.usages: dict[UUID, UsageAudit] = {}
        self.campaigns: dict[UUID, CampaignAudit] = {}
        self.recorded: dict[UUID, RedemptionAudit] = {}  # Redemption.Recorded, by redemption id
        self.redeemed: dict[UUID, tuple[UUID, Decimal]] = {}  # Coupon.Redeemed: redemption -> coupon, discount
        self.given_back: dict[UUID, list[UUID]] = {}  # Coupon.RedemptionReversed: redemption -> coupons
        self.at_checkout: dict[UUID, str] = {}  # redemption id -> the order id it was made for
        self.reservations: dict[UUID, ReservationAudit] = {}
        self.held_on_coupon: dict[UUID, UUID] = {}  # Coupon.Reserved: reservation id -> coupon id
        self.confirmed_on_coupon: dict[UUID, UUID] = {}  # Redeemed naming a hold: reservation id -> redemption id

    def violation(self, message: str) -> None:
        self.report.violations.append(message)

    def coupon(self, coupon_id: UUID) -> CouponAudit:
        audit = self.coupons.get(coupon_id)
        if audit is None:  # events of a coupon the log never created: named once, then audited
            self.violation(f"coupon {coupon_id} has events but no Coupon.Created")
            audit = self.coupons[coupon_id] = CouponAudit(str(coupon_id), None, None)
        return audit

    # --- one event ----------------------------------------------------------------------------------

    def see(self, event: Any, notification_id: int) -> None:
        in_view = notification_id <= self.position
        match event:
            case Coupon.Created():
                self.report.coupons += 1
                self.coupons[event.originator_id] = CouponAudit(event.code, event.max_uses, event.max_uses_per_customer)
            case Coupon.Updated():
                coupon = self.coupon(event.originator_id)
                changes = event.changes
                coupon.max_uses = changes.get("max_uses", coupon.max_uses)
                coupon.max_uses_per_customer = changes.get("max_uses_per_customer", coupon.max_uses_per_customer)
            case Coupon.Redeemed():
                self.see_redeemed(event, in_view)
            case Coupon.Reserved():
                self.see_coupon_hold(event)
            case Coupon.ReservationReleased() | Coupon.ReservationExpired():
                self.end_coupon_hold(event.originator_id, event.reservation_id, type(event).__name__)
            case Coupon.RedemptionReversed():
                self.see_given_back(event, in_view)
            case Redemption.Recorded():
                self.recorded[event.originator_id] = RedemptionAudit(
                    event.coupon_id, event.customer_id, event.campaign_id, event.discount_amount
                )
                if event.order_id is not None and event.originator_id == order_redemption_id_for(
                    event.retailer_id, event.order_id
                ):
                    self.at_checkout[event.originator_id] = event.order_id
            case Redemption.Reversed():
                recorded = self.recorded.get(event.originator_id)
                if recorded is None:
                    self.violation(f"redemption {event.originator_id} is reversed but was never recorded")
                else:
                    recorded.reversals += 1
            case CustomerUsage.Started():
                self.usages[event.originator_id] = UsageAudit(event.coupon_id, event.customer_id)
            case CustomerUsage.Used():
                self.see_customer_use(event)
            case CustomerUsage.Returned():
                usage = self.usages.get(event.originator_id)
                if usage is not None:
                    usage.uses -= 1
            case CustomerUsage.Reserved():
                self.see_customer_hold(event)
            case CustomerUsage.ReservationReleased() | CustomerUsage.ReservationExpired():
                usage = self.usages.get(event.originator_id)
                if usage is None or usage.holds.pop(event.reservation_id, None) is None:
                    self.violation(
                        f"customer usage {event.originator_id} ends hold {event.reservation_id}"
                        f" ({type(event).__name__}), which it does not hold"
                    )
            case Campaign.Created():
                self.campaigns[event.originator_id] = CampaignAudit(
                    event.name, event.max_redemptions, event.max_discount_total
                )
            case Campaign.Used():
                self.see_campaign_use(event)
            case Campaign.Returned():
                campaign = self.campaigns.get(event.originator_id)
                if campaign is not None:
                    campaign.redemptions -= 1
                    campaign.discount_total -= event.discount_amount
            case Campaign.Reserved():
                self.see_campaign_hold(event)
            case Campaign.ReservationReleased() | Campaign.ReservationExpired():
                campaign = self.campaigns.get(event.originator_id)
                if campaign is None or campaign.holds.pop(event.reservation_id, None) is None:
                    self.violation(
                        f"campaign {event.originator_id} ends hold {event.reservation_id}"
                        f" ({type(event).__name__}), which it does not hold"
                    )
            case Reservation.Held():
                self.see_reservation_held(event, in_view)
            case Reservation.Confirmed() | Reservation.Released() | Reservation.Expired():
                self.see_reservation_ended(event, in_view)

    def see_redeemed(self, event: Coupon.Redeemed, in_view: bool) -> None:
        coupon_id = event.originator_id
        coupon = self.coupon(coupon_id)
        confirms_live = False  # turns a hold still live into this use: no count changes
        reservation_id = event.reservation_id
        if reservation_id is not None:
            earlier = self.confirmed_on_coupon.setdefault(reservation_id, event.redemption_id)
            if earlier != event.redemption_id:
                self.violation(
                    f"{coupon.label(coupon_id)}: hold {reservation_id} is confirmed again by redemption"
                    f" {event.redemption_id} (first by {earlier})"
                )
            expires_at = coupon.holds.pop(reservation_id, None)
            if expires_at is None:
                self.violation(
                    f"{coupon.label(coupon_id)}: redemption {event.redemption_id} confirms hold {reservation_id},"
                    " which the coupon does not hold"
                )
            else:
                confirms_live = event.timestamp < expires_at
        self.report.redemptions += 1
        coupon.live += 1
        coupon.live_in_view += in_view
        self.redeemed[event.redemption_id] = (coupon_id, event.discount_amount)
        if not confirms_live:
            what = f"redemption {event.redemption_id} (version {event.originator_version})"
            self.check_coupon_limit(coupon_id, coupon, event.timestamp, what)
        if event.final_total != event.original_subtotal - event.discount_amount or event.final_total < 0:
            self.violation(
                f"redemption {event.redemption_id} of {coupon.label(coupon_id)}: final_total "
                f"{event.final_total} != {event.original_subtotal} - {event.discount_amount}"
            )

    def check_coupon_limit(self, coupon_id: UUID, coupon: CouponAudit, at: datetime, what: str) -> None:
        """Live uses and the holds live at ``at`` within max_uses as it stands."""
        if coupon.max_uses is None:
            return
        held = live_holds(coupon.holds, at)
        if coupon.live + held > coupon.max_uses:
            holds = f" and {held} live holds" if held else ""
            self.violation(
                f"{coupon.label(coupon_id)}: {what} made {coupon.live} live uses{holds}, max_uses was {coupon.max_uses}"
            )

    def see_coupon_hold(self, event: Coupon.Reserved) -> None:
        coupon_id = event.originator_id
        coupon = self.coupon(coupon_id)
        reservation_id = event.reservation_id
        if reservation_id in self.held_on_coupon:
            self.violation(f"{coupon.label(coupon_id)}: hold {reservation_id} is reserved more than once")
        self.held_on_coupon[reservation_id] = coupon_id
        coupon.holds[reservation_id] = event.expires_at
        self.check_coupon_limit(
            coupon_id, coupon, event.timestamp, f"hold {reservation_id} (version {event.originator_version})"
        )

    def end_coupon_hold(self, coupon_id: UUID, reservation_id: UUID, kind: str) -> None:
        coupon = self.coupon(coupon_id)
        if coupon.holds.pop(reservation_id, None) is None:
            self.violation(f"{coupon.label(coupon_id)} ends hold {reservation_id} ({kind}), which it does not hold")

    def see_given_back(self, event: Coupon.RedemptionReversed, in_view: bool) -> None:
        coupon_id = event.originator_id
        coupon = self.coupon(coupon_id)
        self.report.reversals += 1
        coupon.live -= 1
        coupon.live_in_view -= in_view
        self.given_back.setdefault(event.redemption_id, []).append(coupon_id)
        redeemed = self.redeemed.get(event.redemption_id)
        if redeemed is None or redeemed[0] != coupon_id:
            self.violation(
                f"{coupon.label(coupon_id)} gives back redemption {event.redemption_id}, which it never redeemed"
            )
        elif redeemed[1] != event.discount_amount:
            self.violation(
                f"{coupon.label(coupon_id)} gives back redemption {event.redemption_id} for {event.discount_amount},"
                f" it was redeemed for {redeemed[1]}"
            )

    def see_customer_use(self, event: CustomerUsage.Used) -> None:
        usage = self.usages.get(event.originator_id)
        if usage is None:
            self.violation(f"customer usage {event.originator_id} is used but was never started")
            return
        confirms_live = False
        reservation_id = event.reservation_id
        if reservation_id is not None:
            expires_at = usage.holds.pop(reservation_id, None)
            if expires_at is None:
                self.violation(
                    f"customer usage {event.originator_id}: redemption {event.redemption_id} confirms hold"
                    f" {reservation_id}, which it does not hold"
                )
            else:
                confirms_live = event.timestamp < expires_at
        usage.uses += 1
        if not confirms_live:
            self.check_customer_limit(usage, event.timestamp, f"redemption {event.redemption_id}")

    def see_customer_hold(self, event: CustomerUsage.Reserved) -> None:
        usage = self.usages.get(event.originator_id)
        if usage is None:
            self.violation(f"customer usage {event.originator_id} holds but was never started")
            return
        usage.holds[event.reservation_id] = event.expires_at
        self.check_customer_limit(usage, event.timestamp, f"hold {event.reservation_id}")

    def check_customer_limit(self, usage: UsageAudit, at: datetime, what: str) -> None:
        coupon = self.coupon(usage.coupon_id)
        limit = coupon.max_uses_per_customer
        if limit is None:
            return
        held = live_holds(usage.holds, at)
        if usage.uses + held > limit:
            holds = f" and {held} live holds" if held else ""
            self.violation(
                f"customer {usage.customer_id} of {coupon.label(usage.coupon_id)}: {what} made {usage.uses}"
                f" live uses{holds}, max_uses_per_customer was {limit}"
            )

    def see_campaign_use(self, event: Campaign.Used) -> None:
        campaign = self.campaigns.get(event.originator_id)
        if campaign is None:
            self.violation(f"campaign {event.originator_id} is used but was never created")
            return
        confirms_live = False
        reservation_id = event.reservation_id
        if reservation_id is not None:
            hold = campaign.holds.pop(reservation_id, None)
            if hold is None:
                self.violation(
                    f"{campaign.label(event.originator_id)}: redemption {event.redemption_id} confirms hold"
                    f" {reservation_id}, which it does not hold"
                )
            else:  # the same discount moves from held to used
                confirms_live = event.timestamp < hold[0] and event.discount_amount == hold[1]
        campaign.redemptions += 1
        campaign.discount_total += event.discount_amount
        if not confirms_live:
            what = f"redemption {event.redemption_id}"
            self.check_campaign_limits(event.originator_id, campaign, event.timestamp, what)

    def see_campaign_hold(self, event: Campaign.Reserved) -> None:
        campaign = self.campaigns.get(event.originator_id)
        if campaign is None:
            self.violation(f"campaign {event.originator_id} holds but was never created")
            return
        campaign.holds[event.reservation_id] = (event.expires_at, event.discount_amount)
        self.check_campaign_limits(event.originator_id, campaign, event.timestamp, f"hold {event.reservation_id}")

    def check_campaign_limits(self, campaign_id: UUID, campaign: CampaignAudit, at: datetime, what: str) -> None:
        live = [discount for expires_at, discount in campaign.holds.values() if at < expires_at]
        held, held_discount = len(live), sum(live, ZERO)
        label = campaign.label(campaign_id)
        if campaign.max_redemptions is not None and campaign.redemptions + held > campaign.max_redemptions:
            holds = f" and {held} live holds" if held else ""
            self.violation(
                f"{label}: {what} made {campaign.redemptions} live redemptions{holds},"
                f" max_redemptions {campaign.max_redemptions}"
            )
        total = campaign.discount_total + held_discount
        if campaign.max_discount_total is not None and total > campaign.max_discount_total:
            held_text = f" with {held_discount} held" if held else ""
            self.violation(
                f"{label}: {what} took live discounts to {total}{held_text},"
                f" max_discount_total {campaign.max_discount_total}"
            )

    def see_reservation_held(self, event: Reservation.Held, in_view: bool) -> None:
        reservation_id = event.originator_id
        self.report.reservations += 1
        row = ReservationRow(
            id=reservation_id,
            retailer_id=event.retailer_id,
            coupon_id=event.coupon_id,
            code=event.code,
            customer_id=event.customer_id,
            campaign_id=event.campaign_id,
            status=HELD,
            discount_amount=event.discount_amount,
            expires_at=event.expires_at,
            created_at=event.timestamp,
            ended_at=None,
            redemption_id=None,
        )
        self.reservations[reservation_id] = ReservationAudit(row, in_view=row if in_view else None)

    def see_reservation_ended(
        self, event: Reservation.Confirmed | Reservation.Released | Reservation.Expired, in_view: bool
    ) -> None:
        reservation_id = event.originator_id
        status = ENDED_STATUS[type(event)]
        reservation = self.reservations.get(reservation_id)
        if reservation is None:
            self.violation(f"reservation {reservation_id} is {status} but was never held")
            return
        reservation.endings += 1
        if isinstance(event, Reservation.Confirmed):
            reservation.confirmations += 1
            if reservation.confirmations > 1:
                self.violation(
                    f"reservation {reservation_id} is confirmed more than once (redemptions"
                    f" {reservation.redemption_id} and {event.redemption_id})"
                )
            reservation.redemption_id = event.redemption_id
        if reservation.endings > 1 and not (status == CONFIRMED and reservation.status == CONFIRMED):
            self.violation(f"reservation {reservation_id} is {status} after it was {reservation.status}")
        reservation.status = status
        reservation.ended_at = event.timestamp
        if in_view:
            reservation.in_view = reservation.row()

    # --- once the whole log is read ---------------------------------------------------------------

    def check_redemptions(self) -> None:
        for redemption_id in sorted(self.redeemed.keys() ^ self.recorded.keys()):
            self.violation(f"redemption {redemption_id} is not recorded on both its coupon and itself")
        for redemption_id in sorted(self.given_back.keys() | {i for i, r in self.recorded.items() if r.reversals}):
            on_coupons = len(self.given_back.get(redemption_id, ()))
            recorded = self.recorded.get(redemption_id)
            on_itself = recorded.reversals if recorded is not None else 0
            if on_coupons > 1 or on_itself > 1:
                self.violation(
                    f"redemption {redemption_id} is reversed more than once ({on_coupons} RedemptionReversed,"
                    f" {on_itself} Redemption.Reversed)"
                )
            elif on_coupons != on_itself:
                self.violation(
                    f"redemption {redemption_id}: {on_coupons} RedemptionReversed on its coupon but"
                    f" {on_itself} Redemption.Reversed"
                )

    def live_redemptions(self) -> list[RedemptionAudit]:
        return [r for r in self.recorded.values() if not r.reversals]

    def check_customers(self) -> None:
        live: Counter[tuple[UUID, str]] = Counter()
        for redemption in self.live_redemptions():
            if redemption.customer_id is not None:
                live[redemption.coupon_id, redemption.customer_id] += 1
        held: dict[tuple[UUID, str], int] = {}
        for usage in self.usages.values():
            held[usage.coupon_id, usage.customer_id] = usage.uses
        for key in sorted(live.keys() | held.keys(), key=lambda k: (str(k[0]), k[1])):
            coupon_id, customer_id = key
            if held.get(key, 0) != live[key]:
                self.violation(
                    f"customer {customer_id} of {self.coupon(coupon_id).label(coupon_id)}: CustomerUsage holds"
                    f" {held.get(key, 0)} uses, the customer has {live[key]} live redemptions"
                )

    def check_campaigns(self) -> None:
        live: dict[UUID, tuple[int, Decimal]] = {}
        for redemption in self.live_redemptions():
            if redemption.campaign_id is not None:
                count, total = live.get(redemption.campaign_id, (0, ZERO))
                live[redemption.campaign_id] = (count + 1, total + redemption.discount_amount)
        for campaign_id, campaign in self.campaigns.items():
            count, total = live.pop(campaign_id, (0, ZERO))
            if (campaign.redemptions, campaign.discount_total) != (count, total):
                self.violation(
                    f"{campaign.label(campaign_id)} counts {campaign.redemptions} redemptions for"
                    f" {campaign.discount_total}, its live redemptions are {count} for {total}"
                )
        for campaign_id in sorted(live, key=str):
            self.violation(f"campaign {campaign_id} has live redemptions but was never created")

    def check_reservations(self) -> None:
        """Each hold is one Reservation, confirmed at most once into a redemption that exists; the
        holds the coupons, customer usages and campaigns keep open are the Reservations still held."""
        for reservation_id, reservation in self.reservations.items():
            coupon_id = reservation.held.coupon_id
            on_coupon = self.held_on_coupon.get(reservation_id)
            if on_coupon is None:
                self.violation(f"reservation {reservation_id} was never held on its coupon {coupon_id}")
            elif on_coupon != coupon_id:
                self.violation(f"reservation {reservation_id} of coupon {coupon_id} is held on coupon {on_coupon}")
            if reservation.status != CONFIRMED:
                continue
            redemption_id = reservation.redemption_id
            assert redemption_id is not None
            if redemption_id not in self.recorded:
                self.violation(
                    f"reservation {reservation_id} is confirmed as redemption {redemption_id}, which is not recorded"
                )
            redeemed = self.confirmed_on_coupon.get(reservation_id)
            if redeemed != redemption_id:
                self.violation(
                    f"reservation {reservation_id} is confirmed as redemption {redemption_id}, but its coupon"
                    + (f" redeemed it as {redeemed}" if redeemed else " never redeemed it")
                )
        for reservation_id in sorted(self.held_on_coupon.keys() - self.reservations.keys(), key=str):
            coupon_id = self.held_on_coupon[reservation_id]
            self.violation(f"{self.coupon(coupon_id).label(coupon_id)} holds {reservation_id}, which is no Reservation")
        for reservation_id, redemption_id in self.confirmed_on_coupon.items():
            confirmed = self.reservations.get(reservation_id)
            if confirmed is None or confirmed.status != CONFIRMED:
                self.violation(
                    f"redemption {redemption_id} confirms hold {reservation_id}, whose Reservation is"
                    + (f" {confirmed.status}" if confirmed is not None else " missing")
                )

        still_held = {i: r.held for i, r in self.reservations.items() if r.status == HELD}
        open_holds = {
            "coupon": (
                {i: str(coupon_id) for coupon_id, coupon in self.coupons.items() for i in coupon.holds},
                {i: str(row.coupon_id) for i, row in still_held.items()},
            ),
            "customer usage": (
                {i: f"{u.coupon_id}/{u.customer_id}" for u in self.usages.values() for i in u.holds},
                {i: f"{row.coupon_id}/{row.customer_id}" for i, row in still_held.items() if row.customer_id},
            ),
            "campaign": (
                {i: str(campaign_id) for campaign_id, campaign in self.campaigns.items() for i in campaign.holds},
                {i: str(row.campaign_id) for i, row in still_held.items() if row.campaign_id},
            ),
        }
        for what, (kept_open, expected) in open_holds.items():
            for reservation_id in sorted(kept_open.keys() | expected.keys(), key=str):
                if kept_open.get(reservation_id) == expected.get(reservation_id):
                    continue
                found = self.reservations.get(reservation_id)
                status = found.status if found is not None else "missing"
                where = kept_open.get(reservation_id)
                self.violation(
                    f"hold {reservation_id}: its Reservation is {status}, but "
                    + (f"{what} {where} still holds it" if where else f"its {what} does not hold it")
                )

    def check_reservations_view(self, rows: dict[UUID, ReservationRow]) -> None:
        expected = {i: r.in_view for i, r in self.reservations.items() if r.in_view is not None}
        for reservation_id in sorted(rows.keys() | expected.keys(), key=str):
            row, wanted = rows.get(reservation_id), expected.get(reservation_id)
            if row == wanted:
                continue
            if wanted is None:
                self.violation(
                    f"read model has hold {reservation_id} that the event log does not have"
                    f" through notification {self.position}"
                )
            elif row is None:
                self.violation(f"read model lacks hold {reservation_id} (projected through {self.position})")
            else:
                differences = ", ".join(
                    f"{name} {getattr(row, name)} != {getattr(wanted, name)}"
                    for name in ReservationRow.__dataclass_fields__
                    if getattr(row, name) != getattr(wanted, name)
                )
                self.violation(
                    f"read model hold {reservation_id}: {differences} (the Reservation's events through"
                    f" notification {self.position})"
                )

    def check_read_model(self, rows: dict[UUID, int]) -> None:
        for coupon_id, uses_count in rows.items():
            coupon = self.coupons.get(coupon_id)
            if coupon is None:
                self.violation(f"read model has coupon {coupon_id} that the event log does not")
            elif uses_count != coupon.live_in_view:
                self.violation(
                    f"{coupon.label(coupon_id)}: read model uses_count {uses_count} != {coupon.live_in_view}"
                    f" Redeemed - RedemptionReversed events through notification {self.position}"
                )


def verify(ledger: CouponLedger, view: CouponsView, page_size: int = 1000) -> Report:
    report = Report()
    snapshot = view.consistent_snapshot(ledger.name)
    report.projected_through = snapshot.position
    audit = Audit(report, snapshot.position)

    start = 1
    while True:
        notifications = ledger.recorder.select_notifications(start, page_size)
        if not notifications:
            break
        for notification in notifications:
            report.head = notification.id
            audit.see(ledger.mapper.to_domain_event(notification), notification.id)
        start = notifications[-1].id + 1

    audit.check_redemptions()
    audit.check_customers()
    audit.check_campaigns()
    audit.check_reservations()

    # A coupon redeemed at checkout is redeemed in the transaction that writes its order: a
    # redemption without its order is a use consumed for nothing.
    with_orders = view.redemptions_with_orders(sorted(audit.at_checkout))
    for redemption_id in sorted(set(audit.at_checkout) - with_orders):
        report.violations.append(
            f"redemption {redemption_id} was made at checkout for order {audit.at_checkout[redemption_id]},"
            " which does not exist"
        )

    audit.check_read_model(snapshot.uses_counts)
    audit.check_reservations_view(snapshot.reservations)
    return report
