"""The read models and the event log on a streaming replica (DATABASE_REPLICA_URL, a hot standby
of DATABASE_URL).

A read may use the replica only once the replica holds every write acknowledged before the request
(read-your-writes). What it must hold is what the primary's read path waits for: the projection's
tracking record at or past the event log's head taken at the start of the request. The tracking
record is written in the transaction that writes the rows, so once the replica has replayed it, it
has replayed those rows too. (The primary's WAL position alone would not do: the projection may not
have processed the last events yet when the request starts.)

A read of the event log itself (the exports) may use the replica once the replica's log holds
that head: notification ids are given out in commit order (every save takes the events table's
lock) and the standby replays commits in order, so its ``max(notification_id)`` at or past the head
means it holds every event up to the head.

The replica is asked for its position until it reaches the head, for at most
``wait_seconds``; past that, or while the replica cannot be reached, the caller reads from the
primary. After a failure, or a wait that ran out, the replica is left alone for
``RETRY_AFTER_FAILURE`` seconds (those reads go to the primary at once), so an outage or a lagging
replica costs one request one bounded wait, not every request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from eventsourcing.postgres import PostgresDatastore

from api.database import eventsourcing_env
from ledger.event_store import LedgerRecorder, is_contention, is_database_unavailable
from projections.coupons import CouponsView, construct_view

log = logging.getLogger(__name__)
T = TypeVar("T")

# Sessions on the replica carry this name (pg_stat_activity.application_name).
REPLICA_APPLICATION_NAME = "coupon-ledger replica reads"
RETRY_AFTER_FAILURE = 1.0  # seconds the replica is not asked after it failed or lagged past the bound
SHORTEST_POOL_WAIT = 0.05  # seconds: a pool's wait for a connection cannot be zero


def is_replica_failure(error: BaseException) -> bool:
    """Whether ``error`` says the replica cannot answer for the moment (unreachable, a lost
    connection, no pooled connection in time, or a query cancelled because it conflicted with the
    replay of the primary's changes: SQLSTATE 40001), as opposed to a wrong statement."""
    return is_database_unavailable(error) or is_contention(error)


class ReplicaReads:
    """The `coupons` read model (and the tables beside it) and the event log on the replica at
    ``url``: ``view`` and ``recorder`` share one pool of connections."""

    def __init__(self, url: str, application_name: str, wait_seconds: float, events_table: str) -> None:
        self.url = url
        self.application_name = application_name
        self.wait_seconds = wait_seconds
        self.view: CouponsView = construct_view(eventsourcing_env(url, pool_size=2, max_overflow=14))
        self.events_table = events_table
        self._recorder: LedgerRecorder | None = None
        self._recorder_lock = threading.Lock()
        pool = self.datastore.pool
        # A request never waits longer than the bound for one of the replica's connections.
        pool.timeout = max(wait_seconds, SHORTEST_POOL_WAIT)
        if isinstance(pool.kwargs, dict):
            pool.kwargs["application_name"] = REPLICA_APPLICATION_NAME
        self._lock = threading.Lock()
        self._skip_until = 0.0
        self._failing = False
        pool.open(wait=False)  # connect in the background: a replica that is down does not stop a start

    @property
    def datastore(self) -> PostgresDatastore:
        return self.view.datastore

    @property
    def recorder(self) -> LedgerRecorder:
        """The event log on the replica, for its reads (select_chained, select_retailer_events): a
        standby refuses writes. Made on first use, as the library's recorder connects when it is
        made (a replica that is down when `serve` starts does not stop it)."""
        with self._recorder_lock:
            if self._recorder is None:
                self._recorder = LedgerRecorder(self.datastore, events_table_name=self.events_table)
            return self._recorder

    def has_replayed(self, position: int | None) -> bool:
        """Whether the replica's read model has processed the event log through ``position``,
        waiting for it at most ``wait_seconds``; False at once while the replica is left alone
        after a failure, and False (the failure noted) if it cannot be asked."""
        return self._reaches(position, self.tracking_position)

    def holds_log(self, position: int | None) -> bool:
        """Whether the replica's event log holds every event through ``position``, on the same
        terms as ``has_replayed``."""
        return self._reaches(position, self.log_position)

    def resting(self) -> bool:
        """Whether the replica is left alone for now (after a failure, or a wait that ran out)."""
        return time.monotonic() < self._skip_until

    def tracking_position(self) -> int:
        """The replica's tracking position of the projection (0 before the first event)."""
        with self.datastore.transaction(commit=False) as curs:
            return self.view._max_tracking_id(self.application_name, curs) or 0

    def log_position(self) -> int:
        """The replica's event-log head, ``max(notification_id)`` (0 before the first event)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.recorder.max_notification_id_statement)
            row = curs.fetchone()
            return (row["max"] if row is not None else None) or 0

    def _reaches(self, position: int | None, replica_position: Callable[[], int]) -> bool:
        if self.resting():
            return False
        deadline = time.monotonic() + self.wait_seconds
        interval = 0.002
        try:
            while replica_position() < (position or 0):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._skip_until = time.monotonic() + RETRY_AFTER_FAILURE  # lagging: spare the next reads the wait
                    return False
                time.sleep(min(interval, remaining))
                interval = min(interval * 2, 0.05)
        except Exception as error:
            if not is_replica_failure(error):
                raise
            self.failed(error)
            return False
        self._recovered()
        return True

    def read_or(self, read: Callable[[], T], otherwise: Callable[[], T]) -> T:
        """``read()`` on the replica; if the replica fails to answer, the failure is noted and
        ``otherwise()`` (the primary's read) answers instead. Any other error is raised."""
        try:
            return read()
        except Exception as error:
            if not is_replica_failure(error):
                raise
            self.failed(error)
        return otherwise()

    def failed(self, error: BaseException) -> None:
        """The replica could not answer: read from the primary for the next RETRY_AFTER_FAILURE seconds."""
        with self._lock:
            self._skip_until = time.monotonic() + RETRY_AFTER_FAILURE
            first = not self._failing
            self._failing = True
        if first:
            log.warning("reading from the primary: the replica cannot answer (%s: %s)", type(error).__name__, error)

    def _recovered(self) -> None:
        if self._failing:
            with self._lock:
                was, self._failing = self._failing, False
            if was:
                log.warning("reading from the replica again")

    def close(self) -> None:
        self.datastore.close()
