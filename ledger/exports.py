"""The audit trail read in pages, for exports that stream it: one coupon's history, or every event
of a retailer in log order.

Each page is one short statement on an autocommit connection (keyset on the version, or on the
log position), decoded with the ledger's mapper into the served form (ledger/served_events.py)
with the hashes stored when each event was written. A reader holds one page at a time and no
transaction between pages, so an export of any length costs the same memory and blocks no writer.

The first page is read before the iterator is handed back: what can be refused (a missing coupon,
an unreachable database) is refused before an export's first byte is sent. Every page is read
through the recorder given (default: the ledger's own; a replica's copy of the same log), so an
export that has begun on one database ends on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

from ledger.application import CouponLedger, RecordedEvent
from ledger.event_store import LedgerRecorder
from ledger.served_events import served_event

# Events per page: a few hundred kilobytes of rows at a time, and few round trips.
PAGE_SIZE = 2000

P = TypeVar("P")


@dataclass(frozen=True)
class LoggedEvent:
    """An event of a retailer's log: its position (pass it back as ``after`` to resume), its
    stream (the aggregate's id), the stream's coupon code (None for a stream that belongs to no
    coupon, such as a campaign's), and the event as served with its links."""

    position: int
    stream: UUID
    code: str | None
    event: RecordedEvent


class ExportNeedsPostgres(Exception):
    """The retailer's log is read from the PostgreSQL store's columns; other stores keep none."""


def coupon_event_pages(
    ledger: CouponLedger,
    retailer_id: UUID,
    code: str,
    after_version: int = 0,
    page_size: int | None = None,
    recorder: LedgerRecorder | None = None,
) -> Iterator[list[RecordedEvent]]:
    """The coupon's events after ``after_version`` (archived coupons' too), page after page
    (PAGE_SIZE events each, unless told). COUPON_NOT_FOUND, or a database error, is raised here,
    before the first page is handed out. The coupon is looked up in ``ledger``; its events are
    read through ``recorder`` (default: the ledger's own)."""
    page_size = page_size or PAGE_SIZE
    coupon_id = ledger.get_coupon(retailer_id, code, archived=True).id
    first = ledger.stream_events(coupon_id, after_version, page_size, recorder)
    return _pages(first, page_size, lambda last: ledger.stream_events(coupon_id, last.version, page_size, recorder))


def retailer_events(
    ledger: CouponLedger, retailer_id: UUID, after: int, limit: int, recorder: LedgerRecorder | None = None
) -> list[LoggedEvent]:
    """Up to ``limit`` events of every stream the retailer owns (coupons, redemptions,
    reservations, customers' uses, campaigns), in log order after position ``after``, read
    through ``recorder`` (default: the ledger's own) and decoded with the ledger's mapper."""
    store = recorder or ledger.recorder
    if not isinstance(store, LedgerRecorder):
        raise ExportNeedsPostgres("the retailer's log is read from the PostgreSQL store")
    to_domain_event = ledger.mapper.to_domain_event
    logged = []
    for row in store.select_retailer_events(retailer_id, after, limit):
        served = served_event(to_domain_event(row.stored))
        event = RecordedEvent(**served, prev_hash=row.prev_hash, hash=row.hash)
        logged.append(LoggedEvent(row.position, row.stored.originator_id, row.code, event))  # type: ignore[arg-type]
    return logged


def retailer_event_pages(
    ledger: CouponLedger,
    retailer_id: UUID,
    after: int = 0,
    page_size: int | None = None,
    recorder: LedgerRecorder | None = None,
) -> Iterator[list[LoggedEvent]]:
    """``retailer_events`` page after page (PAGE_SIZE events each, unless told), to the end of the
    log as it is when each page is read, every page through the same ``recorder``. Positions are in
    commit order (every save takes the events table's lock), so a page never skips an event that a
    later page would have to go back for."""
    page_size = page_size or PAGE_SIZE
    first = retailer_events(ledger, retailer_id, after, page_size, recorder)
    return _pages(
        first, page_size, lambda last: retailer_events(ledger, retailer_id, last.position, page_size, recorder)
    )


def _pages(first: list[P], page_size: int, after: Callable[[P], list[P]]) -> Iterator[list[P]]:
    page = first
    del first  # hold one page at a time
    while page:
        yield page
        if len(page) < page_size:
            return
        last = page[-1]
        page = []
        page = after(last)
