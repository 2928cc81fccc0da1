"""Runs the projections in exactly one process per database.

Every server process starts a ProjectionLeader; the one that holds a PostgreSQL advisory
lock runs the library's ProjectionRunner, the others wait to take over if it goes away.
Even if two ever ran at once, the tracking record written in each row change's
transaction would make the second writer's transaction fail rather than count twice.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from eventsourcing.projection import ProjectionRunner
from eventsourcing.utils import EnvType

from ledger.application import CouponLedger
from projections.coupons import CouponsProjection, CouponsView

log = logging.getLogger(__name__)
LEADER_LOCK_KEY = 0x636F75706F6E  # "coupon"


class ProjectionLeader:
    def __init__(self, conninfo: str, env: EnvType, poll_interval: float = 1.0) -> None:
        self.conninfo = conninfo
        self.env = dict(env)
        self.poll_interval = poll_interval
        self.is_leader = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="projection-leader", daemon=True)

    def start(self) -> ProjectionLeader:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._lead_while_holding_lock()
            except Exception:
                log.exception("projection runner failed; retrying")
            self.is_leader.clear()
            self._stopping.wait(self.poll_interval)

    def _lead_while_holding_lock(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as lock_conn:
            row = lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,)).fetchone()
            if not row or not row[0]:
                return
            with ProjectionRunner(
                application_class=CouponLedger,
                projection_class=CouponsProjection,
                view_class=CouponsView,
                env=self.env,
            ) as runner:
                self.is_leader.set()
                while not self._stopping.is_set() and not runner.is_interrupted.is_set():
                    runner.run_forever(timeout=self.poll_interval)  # re-raises the runner's error
                    lock_conn.execute("SELECT 1")  # lose the lock, lose the lead
