"""`coupon-ledger rebuild`: the read model (`coupons`, `reservations`, `campaigns`, `redemptions` and
`redemption_buckets`) projected again from the first event, in ONE transaction.

The transaction takes the projection's batch lock (the one every batch takes, see
`CouponsView.claim`), deletes the rows and the tracking record, projects the whole log a page at a
time (each page coalesced exactly as a live batch is, so the result equals the live projection),
and writes one tracking record, that of the last event it read. Until it commits, readers keep
seeing the old rows (DELETE, not TRUNCATE: no lock that would block them) and the live runner
waits on the batch lock. Once it commits, the live runner's pending batch finds its events already
processed, fails its claim, and the projection leader starts it again after the rebuilt position:
no event is skipped or counted twice. If anything fails (an event the read model cannot hold, a
lost connection), nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Tracking
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from ledger.application import CouponLedger
from projections.coupons import CouponChanges, CouponsView, UnwritableEvent, cannot_write

DEFAULT_PAGE_SIZE = 2000


def rebuild(
    ledger: CouponLedger,
    view: CouponsView,
    page_size: int = DEFAULT_PAGE_SIZE,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Rebuild the read model from the event log; returns the notification id it is projected
    through (0 for an empty log). ``progress(n)`` after each page with the number of events it held.

    Raises UnwritableEvent (and changes nothing) at an event the read model cannot hold."""
    application_name = ledger.name
    position = 0
    with view.datastore.get_connection() as conn, conn.transaction():
        curs = conn.cursor()
        view.lock_batches(curs, application_name)
        curs.execute("DELETE FROM reservations")
        curs.execute("DELETE FROM coupons")
        curs.execute("DELETE FROM campaigns")
        curs.execute("DELETE FROM redemptions")
        curs.execute("DELETE FROM redemption_buckets")
        curs.execute(
            SQL("DELETE FROM {}.{} WHERE application_name = %s").format(
                Identifier(view.datastore.schema), Identifier(view.tracking_table_name)
            ),
            (application_name,),
        )
        while True:
            notifications = ledger.recorder.select_notifications(position + 1, page_size)
            if not notifications:
                break
            events = [ledger.mapper.to_domain_event(n) for n in notifications]
            write_page(conn, curs, view, events)
            position = notifications[-1].id
            if progress is not None:
                progress(len(notifications))
        if position:
            view._insert_tracking(curs, Tracking(application_name, position))
    return position


def write_page(conn: Any, curs: Cursor[DictRow], view: CouponsView, events: list[DomainEventProtocol[Any]]) -> None:
    """One page's coalesced changes, in a savepoint; at a value the read model cannot hold, the
    page is written again event by event to name that event."""
    try:
        with conn.transaction():
            view.write_changes(curs, CouponChanges.of(events))
    except Exception as error:
        if not refused(error):
            raise
        for event in events:
            try:
                with conn.transaction():
                    view.write_changes(curs, CouponChanges.of([event]))
            except Exception as single:
                if not refused(single):
                    raise
                raise UnwritableEvent(event, single) from single
        raise  # the page failed but no event alone did: report the page's error


def refused(error: Exception) -> bool:
    """Whether the database (or the projection) refused the rows themselves: psycopg's own errors
    here, where the library does not wrap them."""
    return isinstance(error, (psycopg.DataError, psycopg.IntegrityError)) or cannot_write(error)
