"""The event store as the batching writer uses it: many aggregates read in one round trip, and
a batch of events written in one binary statement.

The library reads one aggregate per query. The writer needs every aggregate of a batch (coupons,
idempotency keys) brought up to date at once, so this module asks for all of them together: for
each id, the newest snapshot past a known version and the events after it. On PostgreSQL that is
one statement over the library's own events and snapshots tables; on any other recorder (the
in-memory store of the unit tests) it falls back to the library's per-aggregate reads.
"""

from __future__ import annotations

import inspect
import os
import time
import types
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import InterfaceError, Notification, OperationalError, StoredEvent
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresTrackingRecorder,
)
from eventsourcing.utils import retry
from psycopg import Connection
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composable, Identifier
from psycopg_pool import ConnectionPool

from ledger.hash_chain import Head, Links, UnchainedStream

# How long a caller waits for the database before it hears that it is unavailable (seconds): for a
# free connection in a pool, and for a new connection to be made (libpq's connect_timeout, at
# least 2). Requests are answered 503 within a few of these rather than hang while it is away.
POOL_TIMEOUT = 2.0
CONNECT_TIMEOUT = 3
# How long a pool keeps retrying a lost connection in the background (backing off exponentially)
# before it gives up and connects afresh at the next request: bounds how long the service takes to
# notice that the database is back after a long outage.
RECONNECT_TIMEOUT = 5.0


# How long a statement may wait for a lock, and run, before the database cancels it (seconds;
# COUPON_LEDGER_LOCK_TIMEOUT, COUPON_LEDGER_STATEMENT_TIMEOUT; 0 turns one off). One session
# holding a row lock then stalls others for at most LOCK_TIMEOUT, and the writer retries what was
# cancelled like a version conflict.
LOCK_TIMEOUT = 2.0
STATEMENT_TIMEOUT = 30.0


def timeouts_ms() -> tuple[int, int]:
    """(lock_timeout, statement_timeout) in milliseconds, from the settings."""
    lock = float(os.environ.get("COUPON_LEDGER_LOCK_TIMEOUT", LOCK_TIMEOUT))
    statement = float(os.environ.get("COUPON_LEDGER_STATEMENT_TIMEOUT", STATEMENT_TIMEOUT))
    return int(lock * 1000), int(statement * 1000)


def session_timeouts() -> str:
    """libpq ``options`` setting lock_timeout and statement_timeout for every connection of a pool."""
    lock, statement = timeouts_ms()
    return f"-c lock_timeout={lock} -c statement_timeout={statement}"


# A connection checked this recently is handed out without another check: under load the same few
# connections go in and out of the pool thousands of times a second, and a round trip each time
# would cost more than the work. A database restart takes longer than this.
CHECK_EVERY = 1.0


def frozen(statement: Composable) -> bytes:
    """A composed statement rendered once. Given a Composed, psycopg renders it again on every
    execute (quoting each identifier); bytes go straight to its cache of parsed queries."""
    return statement.as_bytes()


def freeze_tracking_statements(recorder: PostgresTrackingRecorder) -> None:
    """Render the library's tracking statements once (see ``frozen``): each projection batch runs both."""
    for name in ("max_tracking_id_statement", "insert_tracking_statement"):
        setattr(recorder, name, frozen(getattr(recorder, name)))


_checked: weakref.WeakKeyDictionary[Connection[Any], float] = weakref.WeakKeyDictionary()


def check_connection(conn: Connection[Any]) -> None:
    """A pool's check of each connection it hands out (an empty query, at most once a CHECK_EVERY),
    so that one that died with a database restart is replaced rather than failing its caller. When
    one fails, the pool checks all its idle ones at once: they died together, and found one at a
    time the pool would back off (a second, then two, ...) after each, past POOL_TIMEOUT."""
    now = time.monotonic()
    if now - _checked.get(conn, -CHECK_EVERY) < CHECK_EVERY:
        return
    try:
        if conn not in _checked:
            # First time out of the pool: bound its lock waits and statements. (The pool's
            # ``options`` do it for connections made after bound_waits; one made before, or
            # while it ran, gets them here.)
            conn.execute(session_timeouts_sql())
            if not conn.autocommit:
                conn.commit()
        else:
            ConnectionPool.check_connection(conn)
        _checked[conn] = now
    except Exception:
        pool = getattr(conn, "_pool", None)  # psycopg_pool sets it on a connection it hands out
        if isinstance(pool, ConnectionPool):
            pool.check()
        raise


def session_timeouts_sql() -> str:
    """The same timeouts as session_timeouts(), as SET statements for a connection already made."""
    lock, statement = timeouts_ms()
    return f"SET lock_timeout = {lock}; SET statement_timeout = {statement}"


def bound_waits(datastore: PostgresDatastore) -> None:
    """Make a library datastore's pool give up in bounded time while the database is away, and
    reconnect promptly once it is back (POOL_TIMEOUT is the library's POSTGRES_CONNECT_TIMEOUT);
    its statements wait for locks and run for bounded times too."""
    pool = datastore.pool
    pool.reconnect_timeout = RECONNECT_TIMEOUT
    pool._check = check_connection
    if isinstance(pool.kwargs, dict):
        pool.kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
        pool.kwargs.setdefault("options", session_timeouts())
        if not pool.closed:  # opened already (the library creating its tables): connect again with the options
            pool.drain()


# What the library (it wraps psycopg's errors) and psycopg raise when the database cannot be
# reached, the connection was lost, or no pooled connection came in time (PoolTimeout is a
# psycopg OperationalError): errors of the moment, not of the statement.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


# SQLSTATEs of a statement that lost to others for the moment: a deadlock broken by the database,
# a serialization failure, a lock not granted within lock_timeout, a statement cancelled by
# statement_timeout. The transaction is rolled back; trying it again is the remedy.
CONTENTION = frozenset({"40P01", "40001", "55P03", "57014"})


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a psycopg error, or of the one a library error wraps."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, psycopg.Error) and seen.sqlstate:
            return seen.sqlstate
        seen = seen.__cause__
    return None


def is_contention(error: BaseException) -> bool:
    """Whether ``error`` is a deadlock, serialization failure, lock or statement timeout."""
    return sqlstate(error) in CONTENTION


def is_database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database is unavailable rather than that a statement was wrong."""
    return isinstance(error, DATABASE_UNAVAILABLE) and not is_contention(error)


def fewer_retries(method: Callable[..., Any]) -> Any:
    """The library's read ``method`` retried once, not nine times, after a lost connection.

    The library retries its reads 10 times, 0.2 s apart, each waiting up to POOL_TIMEOUT for a
    connection: over 20 s while the database is down. Once is enough for a connection that went
    stale in a restart; after that the caller hears of it (an HTTP request: 503)."""
    return retry((InterfaceError, OperationalError), max_attempts=2, wait=0.2)(inspect.unwrap(method))


def read_with_fewer_retries(recorder: PostgresAggregateRecorder) -> None:
    """``fewer_retries`` for the reads of a recorder of the library's own class (the snapshot
    store's, which no setting lets us choose)."""
    reads = types.MethodType(fewer_retries(PostgresAggregateRecorder.select_events), recorder)
    recorder.select_events = reads


Aggregate = Any  # any event-sourced aggregate of the application
Work = Callable[[Connection[Any]], None]  # SQL to run in the transaction of a save


@dataclass(frozen=True)
class LoggedRow:
    """A retailer's event as stored: its place in the log (notification_id), its stream's code
    (None for a stream that belongs to no coupon, such as a campaign's), and its links (hex)."""

    position: int
    code: str | None
    stored: StoredEvent
    prev_hash: str
    hash: str


class WorkRefused(Exception):
    """Work given to a save failed: nothing of the save was stored. ``failures`` maps the key
    each work was given with to the error it raised."""

    def __init__(self, failures: dict[Any, Exception]) -> None:
        super().__init__(f"{len(failures)} of the save's works failed")
        self.failures = failures


class AggregateReader:
    """Brings many aggregates up to date, each from a known version, in one query."""

    def __init__(self, app: Application[UUID]) -> None:
        self.app = app
        statement = self._postgres_statement()
        self._statement = None if statement is None else frozen(statement)

    def catch_up(self, known: Mapping[UUID, Aggregate | None]) -> dict[UUID, Aggregate | None]:
        """For each id: the aggregate updated with every event recorded after the version given
        (``None`` for an aggregate not known yet: read from its newest snapshot and the events
        after it). The aggregates given are never changed; an id whose aggregate did not move maps
        to the very object given; an id with no events at all maps to None."""
        if not known:
            return {}
        after = {aggregate_id: (agg.version if agg is not None else 0) for aggregate_id, agg in known.items()}
        snapshots, events = self._select(after)
        result: dict[UUID, Aggregate | None] = {}
        for aggregate_id, aggregate in known.items():
            snapshot = snapshots.get(aggregate_id)
            newer = events.get(aggregate_id, ())
            if snapshot is None and not newer:
                result[aggregate_id] = aggregate
                continue
            if snapshot is not None:
                current = self._decode(snapshot).mutate(None)
            else:
                current = copy_aggregate(aggregate) if aggregate is not None else None
            for stored in newer:
                current = self._decode(stored).mutate(current)
            result[aggregate_id] = current
        return result

    def _decode(self, stored: StoredEvent) -> Any:
        return self.app.mapper.to_domain_event(stored)

    def _select(self, after: Mapping[UUID, int]) -> tuple[dict[UUID, StoredEvent], dict[UUID, list[StoredEvent]]]:
        if self._statement is None:
            return self._select_one_by_one(after)
        recorder = self.app.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        ids = list(after)
        versions = [after[i] for i in ids]
        snapshots: dict[UUID, StoredEvent] = {}
        events: dict[UUID, list[StoredEvent]] = {}
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._statement, (ids, versions), prepare=True, binary=True)
            for row in curs.fetchall():
                stored = StoredEvent(
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
                if row["is_snapshot"]:
                    snapshots[stored.originator_id] = stored  # type: ignore[index]
                else:
                    events.setdefault(stored.originator_id, []).append(stored)  # type: ignore[arg-type]
        return snapshots, events

    def _select_one_by_one(
        self, after: Mapping[UUID, int]
    ) -> tuple[dict[UUID, StoredEvent], dict[UUID, list[StoredEvent]]]:
        snapshot_recorder = self.app.snapshots.recorder if self.app.snapshots is not None else None
        snapshots: dict[UUID, StoredEvent] = {}
        events: dict[UUID, list[StoredEvent]] = {}
        for aggregate_id, version in after.items():
            gt = version
            if snapshot_recorder is not None:
                newest: Sequence[StoredEvent] = snapshot_recorder.select_events(aggregate_id, desc=True, limit=1)
                if newest and newest[0].originator_version > version:
                    snapshots[aggregate_id] = newest[0]
                    gt = newest[0].originator_version
            found = list(self.app.recorder.select_events(aggregate_id, gt=gt))
            if found:
                events[aggregate_id] = found
        return snapshots, events

    def _postgres_statement(self) -> Any:
        recorder = self.app.recorder
        if not isinstance(recorder, PostgresApplicationRecorder):
            return None
        schema = Identifier(recorder.datastore.schema)
        events_table = Identifier(recorder.events_table_name)
        # LATERAL subqueries (OFFSET 0 keeps the planner from flattening them into a join that may
        # scan the whole table): each id is one index scan of the primary key, whatever the table's size.
        wanted = SQL("wanted AS (SELECT * FROM unnest(%b::uuid[], %b::bigint[]) AS w(id, after))")
        snapshot_recorder = self.app.snapshots.recorder if self.app.snapshots is not None else None
        if not isinstance(snapshot_recorder, PostgresAggregateRecorder):
            return SQL(
                "WITH {wanted} SELECT false AS is_snapshot, e.* FROM wanted w CROSS JOIN LATERAL"
                " (SELECT originator_id, originator_version, topic, state FROM {schema}.{events}"
                "  WHERE originator_id = w.id AND originator_version > w.after OFFSET 0) e"
                " ORDER BY 2, 3"
            ).format(wanted=wanted, schema=schema, events=events_table)
        # The newest snapshot past the known version, if any, then the events after whichever is newer.
        return SQL(
            "WITH {wanted},"
            " snap AS (SELECT s.* FROM wanted w CROSS JOIN LATERAL"
            "  (SELECT originator_id, originator_version, topic, state FROM {schema}.{snapshots}"
            "   WHERE originator_id = w.id AND originator_version > w.after"
            "   ORDER BY originator_version DESC LIMIT 1) s)"
            " SELECT true AS is_snapshot, snap.* FROM snap"
            " UNION ALL"
            " SELECT false, e.* FROM wanted w LEFT JOIN snap ON snap.originator_id = w.id CROSS JOIN LATERAL"
            "  (SELECT originator_id, originator_version, topic, state FROM {schema}.{events}"
            "   WHERE originator_id = w.id"
            "   AND originator_version > GREATEST(w.after, COALESCE(snap.originator_version, 0)) OFFSET 0) e"
            " ORDER BY 2, 3"
        ).format(
            wanted=wanted,
            schema=schema,
            events=events_table,
            snapshots=Identifier(snapshot_recorder.events_table_name),
        )


def copy_aggregate(aggregate: Aggregate) -> Aggregate:
    """A shallow copy with its own (empty) list of pending events.

    Enough because aggregates here hold only immutable values: a change replaces an attribute,
    never mutates one in place.
    """
    clone = object.__new__(type(aggregate))
    state = dict(aggregate.__dict__)
    state["_pending_events"] = []
    object.__setattr__(clone, "__dict__", state)
    return clone


class LedgerRecorder(PostgresApplicationRecorder):
    """The library's PostgreSQL application recorder, saving a batch in one statement.

    The library's save is a pipelined transaction of five statements and two waits for the
    server, and renders every row as text (its state as hex) for a composite-type array. Here
    the events go as four binary arrays to ``ledger_insert_events`` (schema.sql), which takes the
    library's EXCLUSIVE lock (notification ids stay in commit order for subscribers), sends its
    NOTIFY, and inserts the batch's snapshots (``insert_events(events, snapshots=[...])``) in the
    same implicit transaction: a snapshot is stored if and only if the events it sums up are.
    One wait per save matters because the writer thread gives up the GIL for each, and getting it
    back from a busy event loop can take the whole switch interval. Chosen with the library's
    APPLICATION_RECORDER_TOPIC setting.

    Unlike the library's, a save that loses its connection is not retried blindly: it may have
    committed, and the writer's callers retry with their idempotency keys instead.
    """

    select_events = fewer_retries(PostgresApplicationRecorder.select_events)
    max_notification_id = fewer_retries(PostgresApplicationRecorder.max_notification_id)

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        bound_waits(datastore)
        # Links events saved without links (stored events written directly): set by the application.
        self.linker: Callable[[Sequence[StoredEvent]], Links] | None = None
        schema = Identifier(self.datastore.schema)
        self.insert_function_statement = frozen(
            SQL(
                "SELECT n FROM {schema}.ledger_insert_events("
                "%b, %b, %b, %b, %b::uuid[], %b::text[], %b, %b, %b, %b, %b, %b) AS n"
            ).format(schema=schema)
        )
        self.heads_statement = frozen(
            SQL(
                "SELECT e.originator_id, e.originator_version, e.hash, e.retailer_id, e.code"
                " FROM unnest(%b::uuid[], %b::bigint[]) AS w(id, version)"
                " JOIN {schema}.{events} e ON e.originator_id = w.id AND e.originator_version = w.version"
            ).format(schema=schema, events=Identifier(self.events_table_name))
        )
        self.chained_statement = SQL(
            "SELECT originator_id, originator_version, topic, state, prev_hash, hash FROM {schema}.{events}"
            " WHERE originator_id = %s AND originator_version > %s ORDER BY originator_version LIMIT %s"
        ).format(schema=schema, events=Identifier(self.events_table_name))
        self._events_table = Identifier(self.datastore.schema, self.events_table_name)
        self._notification_statements: dict[str, bytes] = {}
        # Keyset on the index ledger_events_retailer_position: each page is one range scan.
        self.retailer_events_statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state, code, prev_hash, hash"
            " FROM {schema}.{events} WHERE retailer_id = %s AND notification_id > %s"
            " ORDER BY notification_id LIMIT %s"
        ).format(schema=schema, events=Identifier(self.events_table_name))

    @fewer_retries
    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """The library's ``select_notifications`` (what every subscription pulls), reading only a
        notification's five columns, in binary, as tuples. The library's ``SELECT *`` also fetched
        each event's chain columns and owner, and sent bytea as hex text: about twice the CPU per
        notification, in the projections' pull threads and in the database."""
        conditions: list[str] = []
        params: list[Any] = []
        if start is not None:
            conditions.append("notification_id >= %s" if inclusive_of_start else "notification_id > %s")
            params.append(start)
        if stop is not None:
            conditions.append("notification_id <= %s")
            params.append(stop)
        if topics:
            conditions.append("topic = ANY(%s)")
            params.append(list(topics))
        params.append(limit)
        where = " WHERE " + " AND ".join(conditions) if conditions else ""
        statement = self._notification_statements.get(where)
        if statement is None:  # one of eight, made once
            statement = self._notification_statements[where] = frozen(
                SQL(
                    "SELECT notification_id, originator_id, originator_version, topic, state FROM {table}"
                    + where
                    + " ORDER BY notification_id LIMIT %s"
                ).format(table=self._events_table)
            )
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(statement, params, prepare=True, binary=True)
            return [
                Notification(id=id_, originator_id=stream, originator_version=version, topic=topic, state=bytes(state))
                for id_, stream, version, topic, state in curs.fetchall()
            ]

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        snapshots: Sequence[StoredEvent] = (),
        works: Sequence[tuple[Any, Work]] = (),
        prepare: Work | None = None,
        links: Links | None = None,
        **_: Any,
    ) -> Sequence[int] | None:
        """``works``: (key, work) pairs; each work runs first, in the same transaction, under a
        savepoint of its own, after ``prepare`` (the batch's row locks). If any raises, nothing is
        stored and ``WorkRefused`` names them all; a deadlock, lock or statement timeout in a work
        refuses its command alone, which the writer then tries again a few times. ``links``: each
        event's place in its stream's hash chain (ledger/hash_chain.py); the store refuses an event
        without one."""
        if not stored_events:
            self.run_works(works, prepare)
            return None
        with self.datastore.get_connection() as conn:
            assert conn.autocommit
            if not works:
                return self._insert(conn, stored_events, snapshots, links)
            with conn.transaction():
                self._run(conn, works, prepare)
                return self._insert(conn, stored_events, snapshots, links)

    def run_works(self, works: Sequence[tuple[Any, Work]], prepare: Work | None = None) -> None:
        """The works of commands that have no events to store, in one transaction of their own."""
        if not works:
            return
        with self.datastore.get_connection() as conn, conn.transaction():
            self._run(conn, works, prepare)

    @staticmethod
    def _run(conn: Connection[Any], works: Sequence[tuple[Any, Work]], prepare: Work | None) -> None:
        if prepare is not None:
            try:
                with conn.transaction():
                    prepare(conn)
            except Exception as error:
                # A row some work needs is locked elsewhere: each work then takes its own locks,
                # and only those that wait too long fail.
                if not is_contention(error):
                    raise
        failures: dict[Any, Exception] = {}
        for key, work in works:
            try:
                with conn.transaction():  # a savepoint: a failed work leaves the others' intact
                    work(conn)
            except Exception as error:
                # A work that waited too long for a lock, or lost a deadlock, fails alone (its
                # savepoint is rolled back) and its command is tried again; a lost connection
                # fails the whole save.
                if is_database_unavailable(error):
                    raise
                failures[key] = error
        if failures:
            raise WorkRefused(failures)

    def read_heads(self, wanted: Sequence[tuple[UUID, int]]) -> dict[tuple[UUID, int], Head]:
        """The stored hash and owner of each (stream, version) asked for that exists."""
        heads: dict[tuple[UUID, int], Head] = {}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.heads_statement, ([w[0] for w in wanted], [w[1] for w in wanted]), binary=True)
            for row in curs.fetchall():
                if row["hash"] is None:
                    raise UnchainedStream(
                        f"event {row['originator_version']} of stream {row['originator_id']} has no hash:"
                        " the store was written before the hash chain and must be chained (coupon-ledger migrate)"
                    )
                stream, version = row["originator_id"], row["originator_version"]
                heads[(stream, version)] = Head(version, bytes(row["hash"]).hex(), row["retailer_id"], row["code"])
        return heads

    def select_chained(self, stream: UUID, after_version: int, limit: int) -> list[tuple[StoredEvent, str, str]]:
        """A stream's events after a version, each with its stored prev_hash and hash (hex)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.chained_statement, (stream, after_version, limit), binary=True)
            return [
                (
                    StoredEvent(
                        originator_id=row["originator_id"],
                        originator_version=row["originator_version"],
                        topic=row["topic"],
                        state=bytes(row["state"]),
                    ),
                    bytes(row["prev_hash"]).hex() if row["prev_hash"] is not None else "",
                    bytes(row["hash"]).hex() if row["hash"] is not None else "",
                )
                for row in curs.fetchall()
            ]

    def select_retailer_events(self, retailer_id: UUID, after: int, limit: int) -> list[LoggedRow]:
        """Up to ``limit`` events of every stream the retailer owns, in log order (notification_id)
        after position ``after``, each with its position, its stream's code and its stored hashes.
        One short statement on an autocommit connection: a reader holds no transaction between pages."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.retailer_events_statement, (retailer_id, after, limit), binary=True, prepare=True)
            rows = curs.fetchall()
            for row in rows:
                if row["hash"] is None or row["prev_hash"] is None:
                    raise UnchainedStream(
                        f"event {row['originator_version']} of stream {row['originator_id']} has no hash:"
                        " the store must be chained (coupon-ledger migrate)"
                    )
            return [
                LoggedRow(
                    position=row["notification_id"],
                    code=row["code"],
                    stored=StoredEvent(
                        originator_id=row["originator_id"],
                        originator_version=row["originator_version"],
                        topic=row["topic"],
                        state=bytes(row["state"]),
                    ),
                    prev_hash=bytes(row["prev_hash"]).hex(),
                    hash=bytes(row["hash"]).hex(),
                )
                for row in rows
            ]

    def _insert(
        self,
        conn: Connection[Any],
        stored_events: Sequence[StoredEvent],
        snapshots: Sequence[StoredEvent],
        links: Links | None,
    ) -> list[int]:
        if links is None:
            if self.linker is None:
                raise UnchainedStream("events are stored with their links in the hash chain (see CouponLedger.save)")
            links = self.linker(stored_events)
        with conn.cursor() as curs:
            curs.execute(
                self.insert_function_statement,
                (
                    *_columns(stored_events),
                    links.retailer_ids,
                    links.codes,
                    links.prev_hashes,
                    links.hashes,
                    *_columns(snapshots),
                ),
                binary=True,
                prepare=True,
            )
            return [row["n"] for row in curs.fetchall()]


def _columns(stored: Sequence[StoredEvent]) -> tuple[list[Any], list[int], list[str], list[bytes]]:
    return (
        [e.originator_id for e in stored],
        [e.originator_version for e in stored],
        [e.topic for e in stored],
        [e.state for e in stored],
    )
