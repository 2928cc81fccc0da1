"""Reads of the event log itself (the exports of GET /v1/audit/events and GET
/v1/coupons/{code}/events) reflect every event stored before the request. With a replica
(DATABASE_REPLICA_URL) they read from it once its log holds the primary's head taken at the start
of the request, waited for within COUPON_LEDGER_REPLICA_WAIT_SECONDS (api/replica.py), else from
the primary; a replica that fails before the read has handed anything back leaves the read to the
primary."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from api.services import Services
from ledger.event_store import LedgerRecorder

T = TypeVar("T")


def read_event_log(services: Services, read: Callable[[LedgerRecorder | None], T]) -> T:
    """``read(recorder)`` with the replica's recorder when the replica's log holds every event
    stored before this call, else with None (the ledger's own recorder, on the primary). ``read``
    reads everything that can fail before it returns (a streamed export: its first page), so a
    replica failure is met here and the read starts again on the primary; later pages are read
    through the recorder the first was, so an export that has begun on one database ends on it."""
    replica = services.replica
    if replica is not None and not replica.resting():
        head = services.ledger.recorder.max_notification_id()
        if replica.holds_log(head):
            return replica.read_or(lambda: read(replica.recorder), lambda: read(None))
    return read(None)
