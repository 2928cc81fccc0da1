"""Tools of the tests on PostgreSQL: fresh databases, SQL probes, projection runs, races between
threads, and server, CLI and cluster processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import httpx
import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.projection import ProjectionRunner
from psycopg.conninfo import make_conninfo

from api.database import apply_schema, stop_postmaster
from ledger.application import CouponLedger
from projections.coupons import CouponsProjection, CouponsView
from projections.runner import LEADER_LOCK_KEY

T = TypeVar("T")
CLI = str(Path(sys.executable).with_name("coupon-ledger"))
REDEEMED_TOPIC = "%:Coupon.Redeemed"
RECORDED_TOPIC = "%:Redemption.Recorded"


# --- SQL probes: read the database directly, independently of the code under test ---------------


def scalar(url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def redeemed_events(url: str, coupon_id: UUID | None = None, through: int | None = None) -> int:
    """Coupon.Redeemed events in the log (of one coupon, up to a notification id)."""
    return int(
        scalar(
            url,
            "SELECT count(*) FROM ledger_events WHERE topic LIKE %s"
            " AND (%s::uuid IS NULL OR originator_id = %s::uuid)"
            " AND (%s::bigint IS NULL OR notification_id <= %s::bigint)",
            (REDEEMED_TOPIC, coupon_id, coupon_id, through, through),
        )
    )


def events_of(url: str, type_name: str, originator_id: UUID | None = None) -> int:
    """Events of this type (e.g. "Coupon.Redeemed") in the log, of one aggregate or all."""
    return int(
        scalar(
            url,
            "SELECT count(*) FROM ledger_events WHERE topic LIKE %s AND (%s::uuid IS NULL OR originator_id = %s::uuid)",
            (f"%:{type_name}", originator_id, originator_id),
        )
    )


def recorded_redemptions(url: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM ledger_events WHERE topic LIKE %s", (RECORDED_TOPIC,)))


def head(url: str) -> int:
    return int(scalar(url, "SELECT coalesce(max(notification_id), 0) FROM ledger_events"))


def uses_count(url: str, coupon_id: UUID) -> int | None:
    return scalar(url, "SELECT uses_count FROM coupons WHERE id = %s", (coupon_id,))


def tracking_position(url: str, table: str = "coupons_projection_tracking") -> int:
    """How far a projection has processed the log: the coupons projection's unless ``table`` names another's."""
    return int(
        scalar(
            url,
            f"SELECT coalesce(max(notification_id), 0) FROM {table} WHERE application_name = %s",
            (CouponLedger.name,),
        )
    )


def notification_id_of(url: str, coupon_id: UUID, version: int) -> int:
    return int(
        scalar(
            url,
            "SELECT notification_id FROM ledger_events WHERE originator_id = %s AND originator_version = %s",
            (coupon_id, version),
        )
    )


def leader_lock_holders(url: str) -> list[int]:
    """Backend pids holding the projection leader's advisory lock in this database."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s AND objid = %s AND objsubid = 1",
            (LEADER_LOCK_KEY >> 32, LEADER_LOCK_KEY & 0xFFFFFFFF),
        ).fetchall()
    return [row[0] for row in rows]


def projection_listeners(url: str) -> int:
    """Sessions listening for new events in this database: one per running projection runner (the
    API processes' listeners for revoked keys are not counted)."""
    return int(
        scalar(
            url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN %%'"
            " AND query NOT ILIKE '%%api_key_revoked%%'",
        )
    )


# --- the ledger and its projection ---------------------------------------------------------------


@contextmanager
def fresh_database(server_url: str, prefix: str = "test") -> Iterator[str]:
    """A new, empty database with schema.sql applied; dropped afterwards."""
    name = f"{prefix}_{uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(server_url, dbname=name)
    apply_schema(url)
    try:
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ledger_with_clock(env: dict[str, str], clock: Callable[[], datetime]) -> CouponLedger:
    """Like api.database.open_ledger, with an injected clock."""
    ledger = CouponLedger(env=env, clock=clock)
    assert isinstance(ledger.recorder, PostgresApplicationRecorder)
    ledger.recorder.datastore.register_type_adapters()
    return ledger


class StartLine:
    """A clock that holds every thread on its first reading until all parties have read it.

    The ledger reads the clock after loading the coupon and before saving it, so every racer
    holds the same coupon version when the first save happens: the version race is certain.
    """

    def __init__(self, parties: int, timeout: float = 30.0) -> None:
        self.barrier = threading.Barrier(parties, timeout=timeout)
        self._seen = threading.local()

    def __call__(self) -> datetime:
        if not getattr(self._seen, "passed", False):
            self._seen.passed = True
            with suppress(threading.BrokenBarrierError):
                self.barrier.wait()
        return datetime.now(UTC)


def race(tasks: list[Callable[[], T]], timeout: float = 120.0) -> list[T | BaseException]:
    """Run every task in its own thread, released together; return results or exceptions in order."""
    start = threading.Barrier(len(tasks), timeout=timeout)
    results: list[T | BaseException] = [RuntimeError("did not finish")] * len(tasks)

    def run(index: int, task: Callable[[], T]) -> None:
        try:
            start.wait()
            results[index] = task()
        except BaseException as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i, task), daemon=True) for i, task in enumerate(tasks)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "racing threads did not finish in time"
    return results


def project_to_head(
    env: dict[str, str], url: str, view_class: type[CouponsView] = CouponsView, timeout: float = 30.0
) -> int:
    """Run a projection runner until the read model has processed the head of the log."""
    target = head(url)
    with ProjectionRunner(
        application_class=CouponLedger, projection_class=CouponsProjection, view_class=view_class, env=env
    ) as runner:
        runner.wait(target, timeout=timeout)
    return target


def wait_for(condition: Callable[[], T], timeout: float, interval: float = 0.1, message: str = "") -> T:
    """Poll until ``condition()`` is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message or condition}")
        time.sleep(interval)


# --- the command line and server processes -------------------------------------------------------


def cli_env(url: str | None, data_dir: Path | None = None) -> dict[str, str]:
    """The environment of a CLI process: on ``url``, or (None) on the embedded server in ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("PERSISTENCE_MODULE") and k != "DATABASE_URL"}
    if url is not None:
        env["DATABASE_URL"] = url
    if data_dir is not None:
        env["COUPON_LEDGER_DATA_DIR"] = str(data_dir)
    return env


def run_cli(
    url: str | None, *args: str, timeout: float = 60.0, data_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=cli_env(url, data_dir), capture_output=True, text=True, timeout=timeout, check=False
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One `coupon-ledger serve` process on its own port: on ``url``, or (None) on the embedded
    server in ``data_dir``."""

    def __init__(
        self,
        url: str | None,
        log_dir: Path,
        name: str,
        data_dir: Path | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [CLI, "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
            env={**cli_env(url, data_dir), **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def is_healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def wait_healthy(self, timeout: float = 30.0) -> None:
        wait_for(self.is_healthy, timeout, interval=0.1, message=f"{self.base_url}/healthz")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def terminate(self) -> None:
        self.send_sigterm()
        self.wait_terminated()

    def send_sigterm(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait_terminated(self) -> None:
        """After send_sigterm: waits for the exit (10 s, then kills) and closes the log."""
        if self.process.poll() is None:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def wait_exit(self, timeout: float) -> int:
        """The exit code; fails (and kills the process) if it has not exited within ``timeout`` seconds."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"serve did not exit within {timeout} s:\n{self.log()}") from None


# --- processes, read from /proc (no psutil) --------------------------------------------------------


def processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every process that can be read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if raw and state != "Z":
            yield int(entry.name), [os.fsdecode(arg) for arg in raw.rstrip(b"\0").split(b"\0")]


def postgres_pids(pgdata: Path) -> list[int]:
    """Every `postgres` process started for this data directory (the postmaster and its children
    show it in their command line; children are renamed, so the postmaster's is what counts)."""
    wanted = str(pgdata.resolve())
    return sorted(pid for pid, argv in processes() if Path(argv[0]).name == "postgres" and wanted in argv)


def projection_children(serve_pid: int) -> list[int]:
    """`coupon-ledger project` processes started by the serve process ``serve_pid``."""
    tail = ["project", "--parent", str(serve_pid)]
    return [pid for pid, argv in processes() if argv[-3:] == tail]


class Cluster:
    """Server processes sharing one database; started in groups, all stopped together."""

    def __init__(self, url: str, log_dir: Path) -> None:
        self.url = url
        self.log_dir = log_dir
        self.servers: list[Server] = []

    def start(self, count: int, args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> list[Server]:
        new = []
        for _ in range(count):
            new.append(Server(self.url, self.log_dir, f"server-{len(self.servers)}", args=args, env=env))
            self.servers.append(new[-1])
        for server in new:
            server.wait_healthy()
        return new

    def stop(self) -> None:
        for server in self.servers:  # all stop at once
            server.send_sigterm()
        for server in self.servers:
            server.wait_terminated()


@contextmanager
def cluster(url: str, log_dir: Path) -> Iterator[Cluster]:
    """Server processes on ``url``, terminated on the way out whatever happened."""
    running = Cluster(url, log_dir)
    try:
        yield running
    finally:
        running.stop()


def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def create_coupon(server: Server, api_key: str, code: str, max_uses: int | None) -> dict[str, Any]:
    """A percentage coupon created over HTTP on ``server``; the response body."""
    response = httpx.post(
        f"{server.base_url}/v1/coupons",
        json={"code": code, "discount_type": "percentage", "discount_value": "10", "max_uses": max_uses},
        headers=auth(api_key),
        timeout=30,
    )
    assert response.status_code == 201, response.text
    coupon: dict[str, Any] = response.json()
    return coupon


@contextmanager
def embedded_data_dir(name: str) -> Iterator[Path]:
    """A data folder for an embedded server, removed afterwards with whatever still runs in it.

    Not under pytest's tmp_path: as root the wheel runs PostgreSQL as another user, who must be able
    to enter every parent folder, and each pytest session (others may run at the same time on the
    machine) makes its /tmp/pytest-of-<user> private again."""
    folder = Path(tempfile.mkdtemp(prefix=f"coupon-ledger-{name}-"))
    try:
        yield folder / "data"
    finally:
        stop_postmaster(folder / "data" / "pgdata")
        shutil.rmtree(folder, ignore_errors=True)
