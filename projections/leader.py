"""Runs the projections in exactly one process per database.

Every server process (or `project` child) starts a ProjectionLeader with the projections it is
to run. Each projection has a PostgreSQL advisory lock; the leader runs, from one subscription
(projections/fan_out.py), those whose locks it holds, and the others' leaders stand by to take
over if it goes away. A leader that holds only some of the locks (another process has the rest)
runs those, and starts again with more as soon as it gets them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import EnvType
from psycopg.sql import SQL, Identifier

from projections.backfill import fill_backfills
from projections.coupons import CouponsProjection, CouponsView, UnwritableEvent
from projections.fan_out import FanOutRunner, ProjectionSpec
from projections.runner import DEFAULT_MAX_BATCH_SIZE, LEADER_LOCK_KEY

log = logging.getLogger(__name__)

# Under load, a batch of the coupons projection holds the events of 50 ms (a few hundred at the
# benchmark's rate): a quarter less CPU per event in the projection and in PostgreSQL than batches
# of what each NOTIFY brought. A list that waits for a write (read-your-writes) then waits up to
# 50 ms more; after a quiet spell a write is projected at once, as before.
COUPONS_PACE_SECONDS = 0.05
COUPONS_PROJECTION = ProjectionSpec(CouponsProjection, CouponsView, LEADER_LOCK_KEY, pace=COUPONS_PACE_SECONDS)


def try_lock(conn: psycopg.Connection[tuple[object, ...]], key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])


class ProjectionLeader:
    """Runs ``projections`` (the coupons projection unless told otherwise) in one process per
    database: each in the process that holds its advisory lock."""

    def __init__(
        self,
        conninfo: str,
        env: EnvType,
        poll_interval: float = 1.0,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        projections: Sequence[ProjectionSpec] = (COUPONS_PROJECTION,),
    ) -> None:
        if not projections:
            raise ValueError("no projection to lead")
        self.conninfo = conninfo
        self.env = dict(env)
        self.poll_interval = poll_interval
        self.max_batch_size = max_batch_size
        self.projections = list(projections)
        self.is_leader = threading.Event()
        """Set while this process runs at least one of the projections."""
        self.stopped_on: UnwritableEvent | None = None
        """The event the coupons projection stopped at, if it met one the read model cannot hold."""
        self._stopping = threading.Event()
        self._runner: FanOutRunner | None = None  # while this process leads
        self._thread = threading.Thread(target=self._run, name="projections-leader", daemon=True)

    def start(self) -> ProjectionLeader:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        runner = self._runner
        if runner is not None:  # wakes its run_forever at once, rather than after poll_interval
            runner.stop()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._lead_while_holding_locks()
            except UnwritableEvent as error:
                # Retrying cannot help, and the events after it must not be projected without
                # it: the coupons projection (the one that stops on such an event) stops, says
                # which event, and the list answers 503 until it is dealt with. The others go on.
                # Logged first: whoever sees stopped_on set can also find the log line.
                log.error("projection stopped: %s", error)
                self.stopped_on = error
                self.projections = [
                    p for p in self.projections if not issubclass(p.projection_class, CouponsProjection)
                ]
                if not self.projections:
                    self.is_leader.clear()
                    return
            except Exception:
                log.exception("projection runner failed; retrying")
            self.is_leader.clear()
            self._stopping.wait(self.poll_interval)

    def _lead_while_holding_locks(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as lock_conn:
            held = [spec for spec in self.projections if try_lock(lock_conn, spec.lock_key)]
            if not held:
                return
            with FanOutRunner(specs=held, env=self.env, max_batch_size=self.max_batch_size) as runner:
                # Before the coupons projection's first batch: a table created on a database from
                # before gets its past rows.
                view = runner.view_of(CouponsProjection)
                if isinstance(view, CouponsView):
                    filled = fill_backfills(runner.app, view)
                    if filled:
                        log.info("filled %s from the event log", ", ".join(filled))
                runner.start()
                self.is_leader.set()
                self._runner = runner
                # The library's subscription reads what is stored before its LISTEN takes effect:
                # an event committed in between would wait for the next save's NOTIFY. One NOTIFY
                # per poll makes it pull again, so such an event waits a poll interval at most.
                recorder = runner.app.recorder
                assert isinstance(recorder, PostgresApplicationRecorder)
                wake = SQL("NOTIFY {0}").format(Identifier(recorder.channel_name))
                try:
                    while not self._stopping.is_set() and not runner.is_interrupted.is_set():
                        runner.run_forever(timeout=self.poll_interval)  # re-raises the runner's error
                        lock_conn.execute(wake)  # lose the lock (its connection), lose the lead
                        missing = [spec for spec in self.projections if spec not in held]
                        if any(try_lock(lock_conn, spec.lock_key) for spec in missing):
                            return  # start again, with the projections whose locks it now holds too
                finally:
                    self._runner = None
