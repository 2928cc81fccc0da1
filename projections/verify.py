"""Check the ledger's invariants against the database; name every violation."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from uuid import UUID

from ledger.application import CHECKOUT_KEY_PREFIX, CouponLedger
from ledger.domain import Coupon, Redemption
from projections.coupons import CouponsView


@dataclass
class Report:
    coupons: int = 0
    redemptions: int = 0
    projected_through: int = 0
    head: int = 0
    violations: list[str] = field(default_factory=list)


def verify(ledger: CouponLedger, view: CouponsView, page_size: int = 1000) -> Report:
    report = Report()
    position, rows = view.consistent_snapshot(ledger.name)
    report.projected_through = position

    created: dict[UUID, Coupon.Created] = {}
    redeemed: Counter[UUID] = Counter()
    redeemed_in_view: Counter[UUID] = Counter()
    redemption_ids_in_coupons: set[UUID] = set()
    recorded_redemptions: set[UUID] = set()
    at_checkout: dict[UUID, str] = {}  # redemption id -> the order id it was made for

    start = 1
    while True:
        notifications = ledger.recorder.select_notifications(start, page_size)
        if not notifications:
            break
        for notification in notifications:
            report.head = notification.id
            event = ledger.mapper.to_domain_event(notification)
            if isinstance(event, Coupon.Created):
                created[event.originator_id] = event
            elif isinstance(event, Coupon.Redeemed):
                redeemed[event.originator_id] += 1
                if notification.id <= position:
                    redeemed_in_view[event.originator_id] += 1
                redemption_ids_in_coupons.add(event.redemption_id)
                if event.final_total != event.original_subtotal - event.discount_amount or event.final_total < 0:
                    report.violations.append(
                        f"redemption {event.redemption_id} of coupon {event.originator_id}: final_total "
                        f"{event.final_total} != {event.original_subtotal} - {event.discount_amount}"
                    )
            elif isinstance(event, Redemption.Recorded):
                recorded_redemptions.add(event.originator_id)
                if event.order_id is not None and event.idempotency_key == f"{CHECKOUT_KEY_PREFIX}{event.order_id}":
                    at_checkout[event.originator_id] = event.order_id
        start = notifications[-1].id + 1

    report.coupons = len(created)
    report.redemptions = sum(redeemed.values())
    for coupon_id, event in created.items():
        if event.max_uses is not None and redeemed[coupon_id] > event.max_uses:
            report.violations.append(
                f"coupon {event.code} ({coupon_id}) redeemed {redeemed[coupon_id]} times, max_uses {event.max_uses}"
            )
    for redemption_id in sorted(redemption_ids_in_coupons ^ recorded_redemptions):
        report.violations.append(f"redemption {redemption_id} is not recorded on both its coupon and itself")

    # A coupon redeemed at checkout is redeemed in the transaction that writes its order: a
    # redemption without its order is a use consumed for nothing.
    with_orders = view.redemptions_with_orders(sorted(at_checkout))
    for redemption_id in sorted(set(at_checkout) - with_orders):
        report.violations.append(
            f"redemption {redemption_id} was made at checkout for order {at_checkout[redemption_id]},"
            " which does not exist"
        )

    for coupon_id, uses_count in rows.items():
        if coupon_id not in created:
            report.violations.append(f"read model has coupon {coupon_id} that the event log does not")
        elif uses_count != redeemed_in_view[coupon_id]:
            report.violations.append(
                f"coupon {created[coupon_id].code} ({coupon_id}): read model uses_count {uses_count} != "
                f"{redeemed_in_view[coupon_id]} Redeemed events through notification {position}"
            )
    return report
