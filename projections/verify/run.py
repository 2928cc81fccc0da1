"""verify: the log walked once a page at a time (each page its own statement), then the read model,
the orders and what was left unmatched; every violation named in the report."""

from __future__ import annotations

from ledger.application import CouponLedger
from projections.coupons import CouponsView
from projections.verify.audit import Audit
from projections.verify.orders import check_orders
from projections.verify.read_model import check_coupons, check_reservations, check_unprojected
from projections.verify.state import Report
from projections.verify.store import EventStore

PAGE_SIZE = 2000


def verify(ledger: CouponLedger, view: CouponsView, page_size: int = PAGE_SIZE) -> Report:
    report = Report()
    # Where the read model stands now: the log is audited through it and on to the head.
    position = view.read_lag(ledger.name).tracking_notification_id
    report.projected_through = position
    store = EventStore(ledger)
    audit = Audit(report, position, store)

    start = 1
    while True:
        notifications = ledger.recorder.select_notifications(start, page_size)
        if not notifications:
            break
        audit.see_page([(n.id, ledger.mapper.to_domain_event(n)) for n in notifications])
        start = notifications[-1].id + 1

    audit.check_redemptions()
    audit.check_customers()
    audit.check_campaigns()
    audit.check_reservations()
    check_orders(audit, view)
    check_coupons(audit, view, ledger.name)
    check_reservations(audit, view, ledger.name)
    check_unprojected(audit, store)
    return report
