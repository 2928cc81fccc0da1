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
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from uuid import UUID

from ledger.application import CHECKOUT_KEY_PREFIX, CouponLedger
from ledger.domain import Campaign, Coupon, CustomerUsage, Redemption
from projections.coupons import CouponsView

ZERO = Decimal("0.00")


@dataclass(slots=True)
class Report:
    coupons: int = 0
    redemptions: int = 0
    reversals: int = 0
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

    def label(self, coupon_id: UUID) -> str:
        return f"coupon {self.code} ({coupon_id})"


@dataclass(slots=True)
class UsageAudit:
    coupon_id: UUID
    customer_id: str
    uses: int = 0  # Used - Returned so far


@dataclass(slots=True)
class CampaignAudit:
    name: str
    max_redemptions: int | None
    max_discount_total: Decimal | None
    redemptions: int = 0  # Used - Returned so far
    discount_total: Decimal = ZERO

    def label(self, campaign_id: UUID) -> str:
        return f"campaign {self.name} ({campaign_id})"


@dataclass(slots=True)
class RedemptionAudit:
    coupon_id: UUID
    customer_id: str | None
    campaign_id: UUID | None
    discount_amount: Decimal
    reversals: int = 0  # Redemption.Reversed events


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
            case Coupon.RedemptionReversed():
                self.see_given_back(event, in_view)
            case Redemption.Recorded():
                self.recorded[event.originator_id] = RedemptionAudit(
                    event.coupon_id, event.customer_id, event.campaign_id, event.discount_amount
                )
                if event.order_id is not None and event.idempotency_key == f"{CHECKOUT_KEY_PREFIX}{event.order_id}":
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

    def see_redeemed(self, event: Coupon.Redeemed, in_view: bool) -> None:
        coupon_id = event.originator_id
        coupon = self.coupon(coupon_id)
        self.report.redemptions += 1
        coupon.live += 1
        coupon.live_in_view += in_view
        self.redeemed[event.redemption_id] = (coupon_id, event.discount_amount)
        if coupon.max_uses is not None and coupon.live > coupon.max_uses:
            self.violation(
                f"{coupon.label(coupon_id)}: redemption {event.redemption_id} (version {event.originator_version})"
                f" made {coupon.live} live uses, max_uses was {coupon.max_uses}"
            )
        if event.final_total != event.original_subtotal - event.discount_amount or event.final_total < 0:
            self.violation(
                f"redemption {event.redemption_id} of {coupon.label(coupon_id)}: final_total "
                f"{event.final_total} != {event.original_subtotal} - {event.discount_amount}"
            )

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
        usage.uses += 1
        coupon = self.coupon(usage.coupon_id)
        limit = coupon.max_uses_per_customer
        if limit is not None and usage.uses > limit:
            self.violation(
                f"customer {usage.customer_id} of {coupon.label(usage.coupon_id)}: redemption"
                f" {event.redemption_id} made {usage.uses} live uses, max_uses_per_customer was {limit}"
            )

    def see_campaign_use(self, event: Campaign.Used) -> None:
        campaign = self.campaigns.get(event.originator_id)
        if campaign is None:
            self.violation(f"campaign {event.originator_id} is used but was never created")
            return
        campaign.redemptions += 1
        campaign.discount_total += event.discount_amount
        label = campaign.label(event.originator_id)
        if campaign.max_redemptions is not None and campaign.redemptions > campaign.max_redemptions:
            self.violation(
                f"{label}: redemption {event.redemption_id} made {campaign.redemptions} live redemptions,"
                f" max_redemptions {campaign.max_redemptions}"
            )
        if campaign.max_discount_total is not None and campaign.discount_total > campaign.max_discount_total:
            self.violation(
                f"{label}: redemption {event.redemption_id} took live discounts to {campaign.discount_total},"
                f" max_discount_total {campaign.max_discount_total}"
            )

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
    position, rows = view.consistent_snapshot(ledger.name)
    report.projected_through = position
    audit = Audit(report, position)

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

    # A coupon redeemed at checkout is redeemed in the transaction that writes its order: a
    # redemption without its order is a use consumed for nothing.
    with_orders = view.redemptions_with_orders(sorted(audit.at_checkout))
    for redemption_id in sorted(set(audit.at_checkout) - with_orders):
        report.violations.append(
            f"redemption {redemption_id} was made at checkout for order {audit.at_checkout[redemption_id]},"
            " which does not exist"
        )

    audit.check_read_model(rows)
    return report
