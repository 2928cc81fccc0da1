"""Filling a read-model table that schema.sql created on a database whose projection had already
processed events (`read_model_backfills` names it): the projection leader calls `fill_backfills`
before it projects anything.

One transaction under the projection's batch lock (so no batch commits meanwhile): the table's rows
are deleted, the log is read up to the tracking record a page at a time, exactly as a live batch
projects it, and the table's name is taken off the list. Readers see the table empty until it
commits, never half filled; the other tables are not touched. If it fails, nothing changes and the
next leader tries again.
"""

from __future__ import annotations

from ledger.application import CouponLedger
from projections.coupon_changes import CouponChanges
from projections.coupons_view import CouponsView
from projections.redemptions import write_redemptions

PAGE_SIZE = 2000


def fill_backfills(ledger: CouponLedger, view: CouponsView, page_size: int = PAGE_SIZE) -> list[str]:
    """Fill every table waiting for its past rows; returns their names (none: nothing to do)."""
    with view.datastore.get_connection() as conn, conn.transaction():
        curs = conn.cursor()
        if curs.execute("SELECT 1 FROM read_model_backfills LIMIT 1").fetchone() is None:
            return []  # the usual case, without taking the batch lock
        view.lock_batches(curs, ledger.name)
        names = [row["name"] for row in curs.execute("SELECT name FROM read_model_backfills FOR UPDATE").fetchall()]
        if "redemptions" in names:
            curs.execute("DELETE FROM redemptions")
            curs.execute("DELETE FROM redemption_buckets")
            through = view._max_tracking_id(ledger.name, curs) or 0
            position = 0
            while position < through:
                notifications = ledger.recorder.select_notifications(position + 1, page_size, stop=through)
                if not notifications:
                    break
                changes = CouponChanges.of(ledger.mapper.to_domain_event(n) for n in notifications)
                write_redemptions(curs, changes.redemptions, changes.reversals)
                position = notifications[-1].id
        curs.execute("DELETE FROM read_model_backfills WHERE name = ANY(%s)", (names,))
        return names
