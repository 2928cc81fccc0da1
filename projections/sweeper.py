"""The sweeper: records the expiry of holds past their TTL, then runs the other cleanup chores.

A hold stops counting the moment its TTL passes (the aggregates compare expires_at with the
clock), so nothing waits for the sweeper: it only writes down what already happened, so that the
event log, the `reservations` read model and the per-customer and campaign counters say so too.

Every server process (and every `coupon-ledger project`) starts one; the one that holds a
PostgreSQL advisory lock sweeps, the others wait to take over if it goes away (the projection
leader's pattern, projections/runner.py). Even two sweeping at once would be harmless: the ledger
records an expiry only for a hold still held, and the store's version check lets only one of two
racing saves of the same hold through.

Each sweep reads the holds still held whose expires_at has passed from the read model, oldest
first, and hands them to ``ledger.expire_reservations`` ``chunk_size`` at a time (one writer
command, one save each); then it calls each chore (a callable taking no argument, such as
expiring checkout sessions and stock holds, or deleting idle rate-limit rows) in turn. A chore
that fails is logged and the others still run; a sweep that fails (the database is down) is logged
and tried again ``interval`` seconds later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID

import psycopg

from ledger.actors import SWEEPER, acting_as
from ledger.application import CouponLedger
from ledger.commands import ExpireHolds
from ledger.event_store import CONNECT_TIMEOUT
from ledger.metrics import metrics
from projections.coupons import CouponsView

log = logging.getLogger(__name__)
SWEEPER_LOCK_KEY = 0x7377656570  # "sweep"; the leader's is 0x636F75706F6E
DEFAULT_INTERVAL = 5.0
DEFAULT_CHUNK_SIZE = 200

Chore = Callable[[], object]


class Sweeper:
    def __init__(
        self,
        conninfo: str,
        ledger: CouponLedger,
        view: CouponsView,
        interval: float = DEFAULT_INTERVAL,
        chores: Sequence[Chore] = (),
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be more than 0 seconds, got {interval}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.conninfo = conninfo
        self.ledger = ledger
        self.view = view
        self.interval = interval
        self.chores = list(chores)
        self.chunk_size = chunk_size
        self.clock = clock or ledger.clock
        self.is_sweeping = threading.Event()
        """Set while this sweeper holds the lock (it is the one that sweeps)."""
        self.expired = 0
        """Expiries this sweeper has recorded since it started."""
        self.sweeps = 0
        """Sweeps this sweeper has finished since it started."""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweeper", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def sweep(self) -> int:
        """One sweep: record the expiry of every hold past its TTL that the read model shows as
        held, then run the chores. Returns how many expiries it recorded."""
        recorded = self.expire_holds()
        for chore in self.chores:
            if self._stopping.is_set():
                break
            try:
                chore()
            except Exception:
                log.exception("sweeper chore %s failed", getattr(chore, "__qualname__", chore))
                if (m := metrics()) is not None:
                    m.chore_failures.inc()
        self.sweeps += 1
        if (m := metrics()) is not None:
            m.sweeps.inc()
        return recorded

    def expire_holds(self) -> int:
        now = self.clock()
        recorded = 0
        after: tuple[datetime, UUID] | None = None
        while not self._stopping.is_set():
            page = self.view.expired_holds(now, self.chunk_size, after)
            if not page:
                break
            with acting_as(SWEEPER):
                recorded += self.ledger.execute(ExpireHolds(tuple(hold_id for hold_id, _ in page)))
            after = (page[-1][1], page[-1][0])  # ids the ledger skipped (already ended) are not read again
            if len(page) < self.chunk_size:
                break
        if recorded:
            log.info("sweeper recorded the expiry of %d hold(s)", recorded)
            if (m := metrics()) is not None:
                m.holds_expired.inc(recorded)
        self.expired += recorded
        return recorded

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._sweep_while_holding_lock()
            except Exception:
                log.exception("sweeper failed; retrying")
            self.is_sweeping.clear()
            self._stopping.wait(self.interval)

    def _sweep_while_holding_lock(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as lock_conn:
            row = lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (SWEEPER_LOCK_KEY,)).fetchone()
            if not row or not row[0]:
                return
            self.is_sweeping.set()
            while not self._stopping.is_set():
                lock_conn.execute("SELECT 1")  # lose the lock (the connection), lose the sweep
                self.sweep()
                self._stopping.wait(self.interval)
