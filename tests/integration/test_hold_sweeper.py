"""The sweeper: in exactly one process per database, it records ReservationExpired for the
holds past their TTL, each exactly once, leaves live holds alone, runs the cleanup chores it is
given, takes over again after losing its connection or the database, and stops cleanly; the
`coupon-ledger project` process runs it."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from api.database import apply_schema, eventsourcing_env, open_ledger, start_embedded, stop_embedded
from ledger.application import CouponLedger
from ledger.errors import StoreUnavailable
from ledger.metrics import metrics
from projections.coupons import CouponsView, construct_view
from projections.leader import ProjectionLeader
from projections.sweeper import SWEEPER_LOCK_KEY, Sweeper
from tests.support.commands import create_coupon, reserve
from tests.support.postgres import CLI, cli_env, embedded_data_dir, project_to_head, race, wait_for

D = Decimal
FAST = 0.1  # seconds between sweeps


class Processes:
    """Stand-ins for server processes on one database: each a ledger and a view of its own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ledgers: list[CouponLedger] = []
        self.views: list[CouponsView] = []
        self.sweepers: list[Sweeper] = []
        self.leaders: list[ProjectionLeader] = []

    def sweeper(self, **kwargs: object) -> Sweeper:
        env = eventsourcing_env(self.url, pool_size=2, max_overflow=2)
        ledger, view = open_ledger(env), construct_view(env)
        self.ledgers.append(ledger)
        self.views.append(view)
        sweeper = Sweeper(self.url, ledger, view, **{"interval": FAST, **kwargs})  # type: ignore[arg-type]
        self.sweepers.append(sweeper)
        return sweeper

    def leader(self) -> ProjectionLeader:
        leader = ProjectionLeader(self.url, eventsourcing_env(self.url), poll_interval=FAST).start()
        self.leaders.append(leader)
        return leader

    def close(self) -> None:
        for sweeper in self.sweepers:
            sweeper.stop()
        for leader in self.leaders:
            leader.stop()
        for view in self.views:
            view.datastore.close()
        for ledger in self.ledgers:
            ledger.close()


@pytest.fixture
def processes(database_url: str) -> Iterator[Processes]:
    running = Processes(database_url)
    yield running
    running.close()


def counted(name: str) -> float:
    """A counter of ledger/metrics.py in this process, as /metrics exports it."""
    made = metrics()
    assert made is not None
    return made.registry.get_sample_value(f"coupon_ledger_{name}_total") or 0.0


def ended(url: str, kind: str) -> Counter[UUID]:
    """How many events of this kind (e.g. "Reservation.Expired") each aggregate has in the log."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT originator_id, count(*) FROM ledger_events WHERE topic LIKE %s GROUP BY originator_id",
            (f"%:{kind}",),
        ).fetchall()
    return Counter({row[0]: row[1] for row in rows})


def statuses(url: str) -> dict[UUID, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT id, status FROM reservations").fetchall())  # type: ignore[arg-type]


def lock_holders(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s AND objid = %s AND objsubid = 1",
            (SWEEPER_LOCK_KEY >> 32, SWEEPER_LOCK_KEY & 0xFFFFFFFF),
        ).fetchall()
    return [row[0] for row in rows]


def holds(ledger: CouponLedger, retailer_id: UUID, ttl_seconds: int, count: int, **kwargs: object) -> list[UUID]:
    return [
        reserve(ledger, retailer_id, "SWEPT", D("50.00"), ttl_seconds=ttl_seconds, **kwargs).reservation_id  # type: ignore[arg-type]
        for _ in range(count)
    ]


def reserve_once_up(ledger: CouponLedger, retailer_id: UUID) -> UUID | None:
    """A one-second hold, or None while the ledger's connections still fail (503 to a client)."""
    try:
        return holds(ledger, retailer_id, 1, 1)[0]
    except StoreUnavailable:
        return None


def test_of_two_sweepers_one_sweeps_and_records_each_expired_hold_once_leaving_live_holds_alone(
    database_url: str, ledger: CouponLedger, retailer_id: UUID, processes: Processes
) -> None:
    create_coupon(ledger, retailer_id, "SWEPT", "fixed", D("5.00"), max_uses=10)
    expired_before, sweeps_before = counted("sweeper_holds_expired"), counted("sweeper_sweeps")
    short = holds(ledger, retailer_id, 1, 2) + holds(ledger, retailer_id, 1, 1, customer_id="cy")
    live = holds(ledger, retailer_id, 3600, 2, customer_id="cy")
    processes.leader()
    first, second = processes.sweeper().start(), processes.sweeper().start()

    wait_for(lambda: sum(ended(database_url, "Reservation.Expired").values()) == 3, 30, message="3 expiries")
    wait_for(lambda: sorted(statuses(database_url).values()) == ["expired"] * 3 + ["held"] * 2, 30)
    sweeps = [s.sweeps for s in processes.sweepers]
    wait_for(lambda: max(s.sweeps for s in processes.sweepers) >= max(sweeps) + 3, 30, message="3 more sweeps")

    assert [s.is_sweeping.is_set() for s in (first, second)].count(True) == 1
    assert sorted([first.expired, second.expired]) == [0, 3]
    assert counted("sweeper_holds_expired") == expired_before + 3  # the sweeper's work, as /metrics shows it
    assert counted("sweeper_sweeps") >= sweeps_before + 3
    assert len(lock_holders(database_url)) == 1
    assert ended(database_url, "Reservation.Expired") == Counter({i: 1 for i in short})
    assert ended(database_url, "Coupon.ReservationExpired") == Counter({ledger.get_coupon(retailer_id, "SWEPT").id: 3})
    assert sum(ended(database_url, "CustomerUsage.ReservationExpired").values()) == 1
    assert all(ledger.get_reservation(retailer_id, i).status == "expired" for i in short)
    assert all(ledger.get_reservation(retailer_id, i).status == "held" for i in live)
    assert ledger.get_coupon(retailer_id, "SWEPT").holds.keys() == {str(i) for i in live}

    # The one that sweeps stops: the other takes over, and sweeps what expires next.
    sweeping, waiting = (first, second) if first.is_sweeping.is_set() else (second, first)
    sweeping.stop()
    assert not sweeping._thread.is_alive() and not sweeping.is_sweeping.is_set()
    wait_for(waiting.is_sweeping.is_set, 30, message="the other sweeper to take over")
    late = holds(ledger, retailer_id, 1, 1)
    wait_for(lambda: ended(database_url, "Reservation.Expired")[late[0]] == 1, 30, message="the late hold's expiry")
    assert waiting.expired == 1

    waiting.stop()
    assert not waiting._thread.is_alive() and not sweeping._thread.is_alive()
    wait_for(lambda: not lock_holders(database_url), 10, message="the lock to be released")


def test_two_sweeps_racing_past_the_lock_still_record_each_expiry_once(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID, processes: Processes
) -> None:
    create_coupon(ledger, retailer_id, "SWEPT", "fixed", D("5.00"), max_uses=50)
    short = holds(ledger, retailer_id, 1, 12, customer_id="cy")
    live = holds(ledger, retailer_id, 3600, 3)
    project_to_head(env, database_url)
    sweepers = [processes.sweeper(chunk_size=5) for _ in range(3)]  # not started: no lock, sweeps called directly
    wait_for(lambda: all(not ledger.get_reservation(retailer_id, i).is_live(ledger.clock()) for i in short), 10)

    results = race([s.sweep for s in sweepers])

    assert sum(r for r in results if isinstance(r, int)) == 12, results
    assert ended(database_url, "Reservation.Expired") == Counter({i: 1 for i in short})
    assert sum(ended(database_url, "CustomerUsage.ReservationExpired").values()) == 12
    assert all(ledger.get_reservation(retailer_id, i).status == "held" for i in live)


def test_chores_run_after_each_sweep_and_one_that_fails_does_not_stop_the_others(
    database_url: str, processes: Processes
) -> None:
    calls: list[str] = []

    def failing() -> None:
        calls.append("failing")
        raise RuntimeError("a chore that fails")

    sweeper = processes.sweeper(chores=[failing, lambda: calls.append("sessions"), lambda: calls.append("throttle")])
    assert sweeper.sweep() == 0
    assert calls == ["failing", "sessions", "throttle"]
    sweeper.start()
    wait_for(lambda: calls.count("throttle") >= 3, 30, message="chores at every sweep")
    assert calls[:6] == ["failing", "sessions", "throttle"] * 2


def test_the_sweeper_takes_the_lock_again_when_its_connection_is_lost(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID, processes: Processes
) -> None:
    create_coupon(ledger, retailer_id, "SWEPT", "fixed", D("5.00"))
    processes.leader()
    sweeper = processes.sweeper().start()
    wait_for(sweeper.is_sweeping.is_set, 30)
    (holder,) = lock_holders(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (holder,))
    wait_for(lambda: lock_holders(database_url) not in ([], [holder]), 30, message="the lock taken again")
    (hold,) = holds(ledger, retailer_id, 1, 1)
    wait_for(lambda: statuses(database_url).get(hold) == "expired", 30, message="the hold's expiry")


@pytest.mark.slow
def test_the_sweeper_survives_a_database_outage() -> None:
    with embedded_data_dir("sweeper-outage") as data_dir:
        url = start_embedded(data_dir)
        running = Processes(url)
        try:
            retailer_id = UUID(int=8)
            apply_schema(url)
            writer = open_ledger(eventsourcing_env(url, pool_size=1, max_overflow=2))
            running.ledgers.append(writer)
            create_coupon(writer, retailer_id, "SWEPT", "fixed", D("5.00"))
            running.leader()
            sweeper = running.sweeper().start()
            wait_for(sweeper.is_sweeping.is_set, 30)

            stop_embedded(data_dir)
            wait_for(lambda: not sweeper.is_sweeping.is_set(), 30, message="the sweeper to notice the outage")
            assert start_embedded(data_dir) == url
            wait_for(sweeper.is_sweeping.is_set, 30, message="the sweeper to sweep again")
            hold = wait_for(lambda: reserve_once_up(writer, retailer_id), 30, message="a hold once the database is up")
            wait_for(lambda: statuses(url).get(hold) == "expired", 60, message="the hold's expiry")
            assert sweeper._thread.is_alive()
        finally:
            running.close()
            stop_embedded(data_dir)


@pytest.mark.slow
def test_coupon_ledger_project_runs_the_sweeper(
    database_url: str, ledger: CouponLedger, retailer_id: UUID, tmp_path: Path
) -> None:
    create_coupon(ledger, retailer_id, "SWEPT", "fixed", D("5.00"))
    short = holds(ledger, retailer_id, 1, 2)
    live = holds(ledger, retailer_id, 3600, 1)
    env = {**cli_env(database_url), "COUPON_LEDGER_SWEEP_INTERVAL": str(FAST)}
    with (tmp_path / "project.log").open("w") as log:
        project = subprocess.Popen([CLI, "project"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: sorted(statuses(database_url).values()) == ["expired", "expired", "held"], 60)
        finally:
            project.terminate()
            assert project.wait(30) == 0, (tmp_path / "project.log").read_text()
    assert ended(database_url, "Reservation.Expired") == Counter({i: 1 for i in short})
    assert statuses(database_url)[live[0]] == "held"
    assert not lock_holders(database_url)
