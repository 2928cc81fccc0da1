"""One pass over the event log, in notification order (the order the writers decided in), a page at
a time, with memory bounded by the number of coupons, customer usages and campaigns (a few counters
each) and by the events not yet matched with their partners.

Events saved together are matched as they come and then forgotten: a coupon's Redeemed with its
Redemption.Recorded, a RedemptionReversed with its Redemption.Reversed, a coupon's Reserved with its
Reservation.Held, a Redeemed that confirms a hold with the Reservation.Confirmed. What is left over
at the end is a violation. A reversal needs the redemption it gives back: it is read from the
store (Redemption.Recorded, by id) for each page that holds reversals, instead of keeping every
redemption in memory. Holds are kept only while they are open.

"Live at an event" is the ledger's rule: a hold counts while the event's timestamp < its expires_at.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from ledger.domain import Campaign, Coupon, CustomerUsage, Redemption, Reservation, customer_usage_id_for
from projections.verify.holds import HoldAudit
from projections.verify.state import (
    ZERO,
    CampaignState,
    CouponState,
    Report,
    UsageState,
    add_hold,
    live_holds,
    pop_hold,
)
from projections.verify.store import RECORDED, EventStore

COUPON_SIDE, ITSELF = 0, 1


class Audit(HoldAudit):
    def __init__(self, report: Report, position: int, store: EventStore) -> None:
        super().__init__()
        self.report = report
        self.position = position  # the read model's tracking position
        self.store = store
        self.coupons: dict[int, CouponState] = {}
        self.usages: dict[int, UsageState] = {}
        self.campaigns: dict[int, CampaignState] = {}
        self.stray_campaigns: Counter[int] = Counter()  # live redemptions of campaigns never created
        # A redemption seen on one side only so far: id -> (coupon, discount).
        self.redeemed_only: dict[int, tuple[int, Decimal]] = {}
        self.recorded_only: dict[int, tuple[int, Decimal]] = {}
        # Reversals: [on its coupon, on itself] while they differ; ids reversed once on each side.
        self.reversing: dict[int, list[int]] = {}
        self.reversed_once: set[int] = set()
        self.recorded: dict[UUID, Any] = {}  # the Redemption.Recorded events the current page needs

    def violation(self, message: str) -> None:
        self.report.violations.append(message)

    def label(self, coupon: int) -> str:
        coupon_id = UUID(int=coupon)
        return f"coupon {self.store.code(coupon_id) or coupon_id} ({coupon_id})"

    def coupon(self, coupon: int) -> CouponState:
        state = self.coupons.get(coupon)
        if state is None:  # events of a coupon the log never created: named once, then audited
            self.violation(f"coupon {UUID(int=coupon)} has events but no Coupon.Created")
            state = self.coupons[coupon] = CouponState(None, None, in_view=True)
        return state

    # --- a page of events ---------------------------------------------------------------------------

    def see_page(self, events: list[tuple[int, Any]]) -> None:
        """``events``: (notification id, domain event) in log order."""
        needed: list[UUID] = []
        for _, event in events:
            if isinstance(event, Coupon.RedemptionReversed | Reservation.Confirmed):
                needed.append(event.redemption_id)
            elif isinstance(event, Redemption.Reversed):
                needed.append(event.originator_id)
        self.recorded = self.store.first_events(needed, RECORDED)
        for notification_id, event in events:
            self.report.head = notification_id
            self.see(event, notification_id <= self.position)

    def see(self, event: Any, in_view: bool) -> None:
        key = event.originator_id.int
        match event:
            case Coupon.Created():
                self.report.coupons += 1
                self.coupons[key] = CouponState(event.max_uses, event.max_uses_per_customer, in_view)
            case Coupon.Updated():
                coupon = self.coupon(key)
                changes = event.changes
                coupon.max_uses = changes.get("max_uses", coupon.max_uses)
                coupon.max_uses_per_customer = changes.get("max_uses_per_customer", coupon.max_uses_per_customer)
            case Coupon.Redeemed():
                self.see_redeemed(event, in_view)
            case Coupon.Reserved():
                self.see_coupon_hold(event)
            case Coupon.ReservationReleased() | Coupon.ReservationExpired():
                coupon = self.coupon(key)
                coupon.holds, ended = pop_hold(coupon.holds, event.reservation_id.int)
                if ended is None:
                    self.violation(
                        f"{self.label(key)} ends hold {event.reservation_id} ({type(event).__name__}),"
                        " which it does not hold"
                    )
            case Coupon.RedemptionReversed():
                self.see_given_back(event, in_view)
            case Redemption.Recorded():
                self.see_recorded(event)
            case Redemption.Reversed():
                self.see_reversed(event)
            case CustomerUsage.Started():
                usage = self.usage(key, event.coupon_id.int, event.customer_id)
                usage.started = True
            case CustomerUsage.Used():
                self.see_customer_use(event)
            case CustomerUsage.Returned():
                found = self.usages.get(key)
                if found is not None:
                    found.uses -= 1
            case CustomerUsage.Reserved():
                self.see_customer_hold(event)
            case CustomerUsage.ReservationReleased() | CustomerUsage.ReservationExpired():
                found = self.usages.get(key)
                ended = None
                if found is not None:
                    found.holds, ended = pop_hold(found.holds, event.reservation_id.int)
                if ended is None:
                    self.violation(
                        f"customer usage {event.originator_id} ends hold {event.reservation_id}"
                        f" ({type(event).__name__}), which it does not hold"
                    )
            case Campaign.Created():
                self.campaigns[key] = CampaignState(event.name, event.max_redemptions, event.max_discount_total)
            case Campaign.Used():
                self.see_campaign_use(event)
            case Campaign.Returned():
                campaign = self.campaigns.get(key)
                if campaign is not None:
                    campaign.used -= 1
                    campaign.used_discount -= event.discount_amount
            case Campaign.Reserved():
                self.see_campaign_hold(event)
            case Campaign.ReservationReleased() | Campaign.ReservationExpired():
                campaign = self.campaigns.get(key)
                if campaign is None or campaign.holds.pop(event.reservation_id.int, None) is None:
                    self.violation(
                        f"campaign {event.originator_id} ends hold {event.reservation_id}"
                        f" ({type(event).__name__}), which it does not hold"
                    )
            case Reservation.Held():
                self.see_reservation_held(event)
            case Reservation.Confirmed() | Reservation.Released() | Reservation.Expired():
                self.see_reservation_ended(event)

    def usage(self, key: int, coupon: int, customer_id: str) -> UsageState:
        usage = self.usages.get(key)
        if usage is None:
            usage = self.usages[key] = UsageState(coupon, customer_id)
        return usage

    # --- redemptions and reversals ------------------------------------------------------------------

    def see_redeemed(self, event: Coupon.Redeemed, in_view: bool) -> None:
        key = event.originator_id.int
        coupon = self.coupon(key)
        self.pair_redemption(event.redemption_id, key, event.discount_amount, on_coupon=True)
        reservation_id = event.reservation_id
        if reservation_id is not None:
            self.see_confirmed_on_coupon(reservation_id, event.redemption_id)
            coupon.holds, expires_at = pop_hold(coupon.holds, reservation_id.int)
            if expires_at is None:
                self.violation(
                    f"{self.label(key)}: redemption {event.redemption_id} confirms hold {reservation_id},"
                    " which the coupon does not hold"
                )
        self.report.redemptions += 1
        coupon.live += 1
        if in_view:
            coupon.live_in_view += 1
        # A confirmation turns its hold into a use: it must fit with the other live holds too (uses +
        # live holds, itself included, within max_uses), as the ledger checks when it confirms.
        what = f"redemption {event.redemption_id} (version {event.originator_version})"
        self.check_coupon_limit(key, coupon, event.timestamp, what)
        if event.final_total != event.original_subtotal - event.discount_amount or event.final_total < 0:
            self.violation(
                f"redemption {event.redemption_id} of {self.label(key)}: final_total "
                f"{event.final_total} != {event.original_subtotal} - {event.discount_amount}"
            )

    def pair_redemption(self, redemption_id: UUID, coupon: int, discount: Decimal, on_coupon: bool) -> None:
        waiting, mine = (
            (self.recorded_only, self.redeemed_only) if on_coupon else (self.redeemed_only, self.recorded_only)
        )
        other = waiting.pop(redemption_id.int, None)
        if other is None:
            mine[redemption_id.int] = (coupon, discount)
            return
        redeemed, recorded = ((coupon, discount), other) if on_coupon else (other, (coupon, discount))
        if redeemed != recorded:
            self.violation(
                f"redemption {redemption_id} is redeemed by {self.label(redeemed[0])} for {redeemed[1]}"
                f" but recorded for {self.label(recorded[0])} and {recorded[1]}"
            )

    def see_recorded(self, event: Redemption.Recorded) -> None:
        self.pair_redemption(event.originator_id, event.coupon_id.int, event.discount_amount, on_coupon=False)
        self.count_live(event, +1)

    def count_live(self, recorded: Redemption.Recorded, step: int) -> None:
        """A redemption made (+1) or given back (-1): its customer's and its campaign's live ones."""
        if recorded.customer_id is not None:
            usage_id = customer_usage_id_for(recorded.coupon_id, recorded.customer_id).int
            self.usage(usage_id, recorded.coupon_id.int, recorded.customer_id).redemptions += step
        if recorded.campaign_id is not None:
            campaign = self.campaigns.get(recorded.campaign_id.int)
            if campaign is None:
                self.stray_campaigns[recorded.campaign_id.int] += step
            else:
                campaign.live += step
                campaign.live_discount += step * recorded.discount_amount

    def count_reversal(self, redemption_id: UUID, side: int) -> None:
        key = redemption_id.int
        if key in self.reversed_once:
            self.reversed_once.discard(key)
            counts = [1, 1]
        else:
            counts = self.reversing.pop(key, [0, 0])
        counts[side] += 1
        if counts == [1, 1]:
            self.reversed_once.add(key)
        else:
            self.reversing[key] = counts

    def see_given_back(self, event: Coupon.RedemptionReversed, in_view: bool) -> None:
        key = event.originator_id.int
        coupon = self.coupon(key)
        self.report.reversals += 1
        coupon.live -= 1
        if in_view:
            coupon.live_in_view -= 1
        self.count_reversal(event.redemption_id, COUPON_SIDE)
        recorded = self.recorded.get(event.redemption_id)
        if recorded is None or recorded.coupon_id.int != key:
            self.violation(f"{self.label(key)} gives back redemption {event.redemption_id}, which it never redeemed")
        elif recorded.discount_amount != event.discount_amount:
            self.violation(
                f"{self.label(key)} gives back redemption {event.redemption_id} for {event.discount_amount},"
                f" it was redeemed for {recorded.discount_amount}"
            )

    def see_reversed(self, event: Redemption.Reversed) -> None:
        self.count_reversal(event.originator_id, ITSELF)
        recorded = self.recorded.get(event.originator_id)
        if recorded is None:
            self.violation(f"redemption {event.originator_id} is reversed but was never recorded")
        elif event.originator_version == 2:  # its first reversal: no longer live (a second changes nothing)
            self.count_live(recorded, -1)

    # --- limits ---------------------------------------------------------------------------------------

    def check_coupon_limit(self, key: int, coupon: CouponState, at: datetime, what: str) -> None:
        """Live uses and the holds live at ``at`` within max_uses as it stands."""
        if coupon.max_uses is None:
            return
        held = live_holds(coupon.holds, at)
        if coupon.live + held > coupon.max_uses:
            holds = f" and {held} live holds" if held else ""
            self.violation(
                f"{self.label(key)}: {what} made {coupon.live} live uses{holds}, max_uses was {coupon.max_uses}"
            )

    def see_customer_use(self, event: CustomerUsage.Used) -> None:
        usage = self.usages.get(event.originator_id.int)
        if usage is None or not usage.started:
            self.violation(f"customer usage {event.originator_id} is used but was never started")
            return
        confirms_live = False
        reservation_id = event.reservation_id
        if reservation_id is not None:
            usage.holds, expires_at = pop_hold(usage.holds, reservation_id.int)
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
        usage = self.usages.get(event.originator_id.int)
        if usage is None or not usage.started:
            self.violation(f"customer usage {event.originator_id} holds but was never started")
            return
        usage.holds = add_hold(usage.holds, event.reservation_id.int, event.expires_at)
        self.check_customer_limit(usage, event.timestamp, f"hold {event.reservation_id}")

    def check_customer_limit(self, usage: UsageState, at: datetime, what: str) -> None:
        limit = self.coupon(usage.coupon).max_uses_per_customer
        if limit is None:
            return
        held = live_holds(usage.holds, at)
        if usage.uses + held > limit:
            holds = f" and {held} live holds" if held else ""
            self.violation(
                f"customer {usage.customer_id} of {self.label(usage.coupon)}: {what} made {usage.uses}"
                f" live uses{holds}, max_uses_per_customer was {limit}"
            )

    def see_campaign_use(self, event: Campaign.Used) -> None:
        campaign = self.campaigns.get(event.originator_id.int)
        if campaign is None:
            self.violation(f"campaign {event.originator_id} is used but was never created")
            return
        confirms_live = False
        reservation_id = event.reservation_id
        if reservation_id is not None:
            hold = campaign.holds.pop(reservation_id.int, None)
            if hold is None:
                self.violation(
                    f"{campaign.label(event.originator_id)}: redemption {event.redemption_id} confirms hold"
                    f" {reservation_id}, which it does not hold"
                )
            else:  # the same discount moves from held to used
                confirms_live = event.timestamp < hold[0] and event.discount_amount == hold[1]
        campaign.used += 1
        campaign.used_discount += event.discount_amount
        if not confirms_live:
            what = f"redemption {event.redemption_id}"
            self.check_campaign_limits(event.originator_id, campaign, event.timestamp, what)

    def see_campaign_hold(self, event: Campaign.Reserved) -> None:
        campaign = self.campaigns.get(event.originator_id.int)
        if campaign is None:
            self.violation(f"campaign {event.originator_id} holds but was never created")
            return
        campaign.holds[event.reservation_id.int] = (event.expires_at, event.discount_amount)
        self.check_campaign_limits(event.originator_id, campaign, event.timestamp, f"hold {event.reservation_id}")

    def check_campaign_limits(self, campaign_id: UUID, campaign: CampaignState, at: datetime, what: str) -> None:
        live = [discount for expires_at, discount in campaign.holds.values() if at < expires_at]
        held, held_discount = len(live), sum(live, ZERO)
        label = campaign.label(campaign_id)
        if campaign.max_redemptions is not None and campaign.used + held > campaign.max_redemptions:
            holds = f" and {held} live holds" if held else ""
            self.violation(
                f"{label}: {what} made {campaign.used} live redemptions{holds},"
                f" max_redemptions {campaign.max_redemptions}"
            )
        total = campaign.used_discount + held_discount
        if campaign.max_discount_total is not None and total > campaign.max_discount_total:
            held_text = f" with {held_discount} held" if held else ""
            self.violation(
                f"{label}: {what} took live discounts to {total}{held_text},"
                f" max_discount_total {campaign.max_discount_total}"
            )

    # --- once the whole log is read ---------------------------------------------------------------

    def check_redemptions(self) -> None:
        for key in sorted(self.redeemed_only.keys() | self.recorded_only.keys()):
            self.violation(f"redemption {UUID(int=key)} is not recorded on both its coupon and itself")
        for key, (on_coupon, on_itself) in sorted(self.reversing.items()):
            redemption_id = UUID(int=key)
            if on_coupon > 1 or on_itself > 1:
                self.violation(
                    f"redemption {redemption_id} is reversed more than once ({on_coupon} RedemptionReversed,"
                    f" {on_itself} Redemption.Reversed)"
                )
            else:
                self.violation(
                    f"redemption {redemption_id}: {on_coupon} RedemptionReversed on its coupon but"
                    f" {on_itself} Redemption.Reversed"
                )

    def check_customers(self) -> None:
        wrong = [u for u in self.usages.values() if u.uses != u.redemptions]
        for usage in sorted(wrong, key=lambda u: (str(UUID(int=u.coupon)), u.customer_id)):
            self.violation(
                f"customer {usage.customer_id} of {self.label(usage.coupon)}: CustomerUsage holds"
                f" {usage.uses} uses, the customer has {usage.redemptions} live redemptions"
            )

    def check_campaigns(self) -> None:
        for key, campaign in self.campaigns.items():
            if (campaign.used, campaign.used_discount) != (campaign.live, campaign.live_discount):
                self.violation(
                    f"{campaign.label(UUID(int=key))} counts {campaign.used} redemptions for"
                    f" {campaign.used_discount}, its live redemptions are {campaign.live} for {campaign.live_discount}"
                )
        for key in sorted(k for k, live in self.stray_campaigns.items() if live > 0):
            self.violation(f"campaign {UUID(int=key)} has live redemptions but was never created")
