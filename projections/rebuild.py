"""`coupon-ledger rebuild`: every table of the coupons projection (projections/tables.py
PROJECTED_TABLES) and its tracking record projected again from the first event, into fresh
tables, swapped in for the live ones at the end.

1. Fresh, empty copies of the live tables (and of the tracking table) are made in the scratch
   schema `coupons_rebuild` (projections/table_swap.py: same columns, defaults, constraints,
   indexes and their names).
2. The log is projected into them a page at a time, each page in its own short transaction, by
   the projection's own SQL (`CouponsView.write_changes`, each page coalesced exactly as a live
   batch is) with the scratch schema first on the search path. Meanwhile the live tables keep
   serving readers and the live projection keeps projecting into them.
3. Once a page comes back short (the copies are near the head), one transaction takes the
   projection's batch lock (see `CouponsView.claim`: no live batch can commit meanwhile),
   projects the events still missing up to the head, writes the tracking record of the last one
   (past the live one: a live batch waiting on the lock then finds its events processed, fails its
   claim, and the projection leader starts it again after the rebuilt position), and swaps the
   copies in for the live tables, which it drops. No event is skipped or counted twice; a reader
   sees the old tables or the new ones, whole.

The projection's SQL must name its tables unqualified (as `CouponsView` does): that is how the
pages land in the copies rather than in the live tables.

If anything fails (an event the read model cannot hold, a lost connection), the live tables are
untouched and the scratch schema is dropped. One rebuild runs at a time (a session advisory lock);
a scratch schema left by a rebuild that was killed is dropped by the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from eventsourcing.domain import DomainEventProtocol
from psycopg import Connection, Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from ledger.application import CouponLedger
from ledger.event_store import CONTENTION, sqlstate
from projections.coupons import CouponChanges, CouponsView, UnwritableEvent, cannot_write
from projections.coupons_view import BATCH_LOCK_CLASS
from projections.table_swap import create_copies, drop_copies, swap_in
from projections.tables import PROJECTED_TABLES

DEFAULT_PAGE_SIZE = 2000
SCRATCH_SCHEMA = "coupons_rebuild"
# How long the swap waits for the live tables' readers before it lets them go and tries again.
SWAP_LOCK_TIMEOUT = "1s"
SWAP_ATTEMPTS = 10

Progress = Callable[[int, int], None]
"""``progress(events, head)``: after each page, the number of events it held and the log's head."""


class RebuildRunning(Exception):
    """Another rebuild of the same database is running."""


def rebuild(
    ledger: CouponLedger,
    view: CouponsView,
    page_size: int = DEFAULT_PAGE_SIZE,
    progress: Progress | None = None,
) -> int:
    """Rebuild the read model from the event log; returns the notification id it is projected
    through (0 for an empty log).

    Raises UnwritableEvent (and changes nothing) at an event the read model cannot hold, and
    RebuildRunning if another rebuild is running."""
    schema = view.datastore.schema
    tables = (*PROJECTED_TABLES, view.tracking_table_name)
    with view.datastore.get_connection() as conn:
        take_rebuild_lock(conn, view)
        try:
            with conn.transaction():
                create_copies(conn.cursor(), schema, tables, SCRATCH_SCHEMA)
            position = fill(conn, ledger, view, page_size, progress)
            with conn.transaction():
                for table in tables:  # statistics for the planner before readers use them
                    conn.execute(SQL("ANALYZE {}").format(Identifier(SCRATCH_SCHEMA, table)))
            return swap(conn, ledger, view, tables, position, page_size, progress)
        except BaseException:
            drop_scratch(conn)
            raise
        finally:
            release_rebuild_lock(conn, view)


def fill(
    conn: Connection[DictRow], ledger: CouponLedger, view: CouponsView, page_size: int, progress: Progress | None
) -> int:
    """Project the log into the copies a page per transaction, until a page comes back short."""
    position = 0
    while True:
        with conn.transaction():
            curs = use_copies(conn)
            read, position = project_page(conn, curs, ledger, view, position, page_size, progress)
        if read < page_size:
            return position


def swap(
    conn: Connection[DictRow],
    ledger: CouponLedger,
    view: CouponsView,
    tables: tuple[str, ...],
    position: int,
    page_size: int,
    progress: Progress | None,
) -> int:
    """Under the batch lock: the events still missing, the tracking records, and the swap. Tried
    again (from ``position``: what failed was rolled back) when the readers of the live tables
    hold them past SWAP_LOCK_TIMEOUT or a deadlock is broken."""
    application_name = ledger.name
    schema = view.datastore.schema
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            with conn.transaction():
                curs = use_copies(conn)
                view.lock_batches(curs, application_name)
                # Every event through the head is committed (the recorder's lock keeps
                # notification ids in commit order), the live tracking record among them.
                head = ledger.recorder.max_notification_id() or 0
                at = position
                while at < head:
                    _, at = project_page(conn, curs, ledger, view, at, page_size, progress, stop=head)
                tracking = Identifier(SCRATCH_SCHEMA, view.tracking_table_name)
                curs.execute(
                    SQL("INSERT INTO {} SELECT * FROM {} WHERE application_name <> %s").format(
                        tracking, Identifier(schema, view.tracking_table_name)
                    ),
                    (application_name,),
                )
                if at:
                    curs.execute(
                        SQL("INSERT INTO {} (application_name, notification_id) VALUES (%s, %s)").format(tracking),
                        (application_name, at),
                    )
                # The rebuilt tables hold the whole log: none is waiting for its past rows any more.
                curs.execute(SQL("DELETE FROM {}").format(Identifier(schema, "read_model_backfills")))
                swap_in(curs, schema, tables, SCRATCH_SCHEMA, SWAP_LOCK_TIMEOUT)
            return at
        except Exception as error:
            if sqlstate(error) not in CONTENTION or attempt == SWAP_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def use_copies(conn: Connection[DictRow]) -> Cursor[DictRow]:
    """A cursor whose unqualified table names are the copies', until the transaction ends."""
    curs = conn.cursor()
    curs.execute(
        "SELECT set_config('search_path', %s || ', ' || current_setting('search_path'), true)", (SCRATCH_SCHEMA,)
    )
    return curs


def project_page(
    conn: Connection[DictRow],
    curs: Cursor[DictRow],
    ledger: CouponLedger,
    view: CouponsView,
    position: int,
    page_size: int,
    progress: Progress | None,
    stop: int | None = None,
) -> tuple[int, int]:
    """The page of events after ``position`` (through ``stop`` at most), written in the caller's
    transaction; returns how many events it held and the position after it."""
    notifications = ledger.recorder.select_notifications(position + 1, page_size, stop=stop)
    if not notifications:
        return 0, stop if stop is not None else position
    events = [ledger.mapper.to_domain_event(n) for n in notifications]
    write_page(conn, curs, view, events)
    if progress is not None:
        progress(len(notifications), ledger.recorder.max_notification_id() or 0)
    return len(notifications), notifications[-1].id


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


def rebuild_lock_key(view: CouponsView) -> tuple[int, str]:
    return BATCH_LOCK_CLASS, f"{SCRATCH_SCHEMA}/{view.tracking_table_name}"


def take_rebuild_lock(conn: Connection[DictRow], view: CouponsView) -> None:
    row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS taken", rebuild_lock_key(view)).fetchone()
    if row is None or not row["taken"]:
        raise RebuildRunning("another rebuild of this read model is running")


def release_rebuild_lock(conn: Connection[DictRow], view: CouponsView) -> None:
    if not conn.closed and not conn.broken:
        conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", rebuild_lock_key(view))


def drop_scratch(conn: Connection[DictRow]) -> None:
    """After a failure: the copies go (if the connection is gone, the next rebuild drops them)."""
    if conn.closed or conn.broken:
        return
    with conn.transaction():
        drop_copies(conn.cursor(), SCRATCH_SCHEMA)
