"""verify: the log walked once a page at a time (each page its own statement), then the read model,
the orders and what was left unmatched; every violation named in the report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledger.application import CouponLedger
from ledger.digest import AuditLog
from ledger.event_store import LedgerRecorder
from projections.coupons import CouponsView
from projections.verify.audit import Audit
from projections.verify.chains import ChainAudit, check_cut, check_digest, check_links
from projections.verify.orders import check_orders
from projections.verify.read_model import check_coupons, check_reservations, check_unprojected
from projections.verify.redemption_rows import check_buckets, check_redemption_rows, check_unprojected_redemptions
from projections.verify.state import Report
from projections.verify.store import EventStore

PAGE_SIZE = 2000


def verify(
    ledger: CouponLedger,
    view: CouponsView,
    page_size: int = PAGE_SIZE,
    digest: Mapping[str, Any] | None = None,
    digest_verifies: bool = False,
) -> Report:
    """``digest``: one saved from GET /v1/audit/digest, checked against the log too
    (``digest_verifies``: whether its signature is the deployment key's)."""
    report = Report()
    # Where the read model stands now: the log is audited through it and on to the head.
    position = view.read_lag(ledger.name).tracking_notification_id
    report.projected_through = position
    store = EventStore(ledger)
    audit = Audit(report, position, store)
    chains = ChainAudit(report)

    after = 0
    while True:
        rows = store.page(after, page_size)
        if not rows:
            break
        events = [store.decode(row) for row in rows]
        for row, event in zip(rows, events, strict=True):
            chains.see(row, event)
        audit.see_page([(row["notification_id"], event) for row, event in zip(rows, events, strict=True)])
        after = rows[-1]["notification_id"]
    check_links(store, report)
    check_cut(store, report)
    if digest is not None:
        assert isinstance(ledger.recorder, LedgerRecorder)
        check_digest(digest, AuditLog(ledger.recorder), digest_verifies, report)

    audit.check_redemptions()
    audit.check_customers()
    audit.check_campaigns()
    audit.check_reservations()
    check_orders(audit, view)
    check_coupons(audit, view, ledger.name)
    check_reservations(audit, view, ledger.name)
    check_unprojected(audit, store)
    check_redemption_rows(audit, view, ledger.name)
    check_unprojected_redemptions(audit, view)
    check_buckets(audit, view)
    return report
