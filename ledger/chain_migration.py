"""Chaining a store written before the hash chain: once, at the first start of a version that has it.

Every event with no hash yet is linked, stream by stream in version order, exactly as the writer
links a new one (ledger/hash_chain.py), a page at a time, each page in a transaction of its own (a
start that is stopped half way resumes where the last page committed). The events' recorded
contents are not touched: the database's append-only trigger lets an event's links be filled in once
and nothing else. Concurrent starters take turns on an advisory lock; a store with nothing left to
chain costs one index probe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Identifier

from ledger.event_store import LedgerRecorder
from ledger.hash_chain import owner_of
from ledger.served_events import ZERO_HASH, event_hash, served_event

log = logging.getLogger(__name__)

CHAIN_LOCK_KEY = 0x636861696E  # "chain"
PAGE_SIZE = 5000


def chain_unchained(
    recorder: LedgerRecorder,
    decode: Callable[[Any], Any],
    page_size: int = PAGE_SIZE,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Link every event that has no hash; returns how many were linked. ``decode``: a stored
    event to its domain event (the application's mapper)."""
    schema = Identifier(recorder.datastore.schema)
    events = Identifier(recorder.events_table_name)
    with recorder.datastore.get_connection() as conn:
        probe = SQL("SELECT 1 FROM {}.{} WHERE hash IS NULL LIMIT 1").format(schema, events)
        if conn.execute(probe).fetchone() is None:
            return 0
        conn.execute("SELECT pg_advisory_lock(%s)", (CHAIN_LOCK_KEY,))
        try:
            linked = _chain(conn, recorder, decode, schema, events, page_size, progress)
            # Every event is linked now: the CHECK that binds new events holds for all of them.
            conn.execute(SQL("ALTER TABLE {}.{} VALIDATE CONSTRAINT ledger_events_chained").format(schema, events))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (CHAIN_LOCK_KEY,))
    if linked:
        log.info("linked %d events recorded before the hash chain", linked)
    return linked


def _chain(
    conn: Any,
    recorder: LedgerRecorder,
    decode: Callable[[Any], Any],
    schema: Identifier,
    events: Identifier,
    page_size: int,
    progress: Callable[[int], None] | None,
) -> int:
    select = SQL(
        "SELECT originator_id, originator_version, topic, state FROM {}.{}"
        " WHERE hash IS NULL AND (originator_id, originator_version) > (%s, %s)"
        " ORDER BY originator_id, originator_version LIMIT %s"
    ).format(schema, events)
    update = SQL(
        "UPDATE {}.{} e SET prev_hash = u.p, hash = u.h, retailer_id = u.r, code = u.c"
        " FROM unnest(%s::uuid[], %s::bigint[], %s::bytea[], %s::bytea[], %s::uuid[], %s::text[])"
        " AS u(i, v, p, h, r, c)"
        " WHERE e.originator_id = u.i AND e.originator_version = u.v"
    ).format(schema, events)
    after: tuple[UUID, int] = (UUID(int=0), 0)
    stream: UUID | None = None  # the stream being linked, its head's hash and its owner
    head, retailer_id, code = ZERO_HASH, None, None
    shares_owner: dict[UUID, UUID] = {}  # stream -> the coupon whose owner it shares
    linked = 0
    while True:
        rows = conn.execute(select, (*after, page_size)).fetchall()
        if not rows:
            break
        # Streams that continue one linked before (in an earlier page, or an earlier start): their
        # head, read for the whole page at once.
        firsts, current = [], stream
        for row in rows:
            if row["originator_id"] != current and row["originator_version"] > 1:
                firsts.append((row["originator_id"], row["originator_version"] - 1))
            current = row["originator_id"]
        known = recorder.read_heads(firsts) if firsts else {}
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
        for row in rows:
            stored = StoredEvent(row["originator_id"], row["originator_version"], row["topic"], bytes(row["state"]))
            event = decode(stored)
            if stored.originator_id != stream or stored.originator_version == 1:
                stream = stored.originator_id  # type: ignore[assignment]
                if stored.originator_version == 1:
                    head = ZERO_HASH
                    owner = owner_of(event)
                    if isinstance(owner, UUID):
                        shares_owner[stream] = owner  # type: ignore[index]
                        owner = (None, None)
                    retailer_id, code = owner
                else:
                    before = known[(stream, stored.originator_version - 1)]  # type: ignore[index]
                    head, retailer_id, code = before.hash, before.retailer_id, before.code
            prev, head = head, event_hash(head, served_event(event))
            for column, value in zip(
                columns,
                (stream, stored.originator_version, bytes.fromhex(prev), bytes.fromhex(head), retailer_id, code),
                strict=True,
            ):
                column.append(value)
        with conn.transaction():
            conn.execute(update, columns)
        linked += len(rows)
        if progress is not None:
            progress(len(rows))
        after = (rows[-1]["originator_id"], rows[-1]["originator_version"])
    if shares_owner:
        # A customer's uses of a coupon belong to the coupon's retailer and code.
        conn.execute(
            SQL(
                "UPDATE {s}.{e} e SET retailer_id = c.retailer_id, code = c.code"
                " FROM unnest(%s::uuid[], %s::uuid[]) AS u(stream, coupon)"
                " JOIN {s}.{e} c ON c.originator_id = u.coupon AND c.originator_version = 1"
                " WHERE e.originator_id = u.stream AND e.retailer_id IS NULL"
            ).format(s=schema, e=events),
            (list(shares_owner), list(shares_owner.values())),
        )
    return linked
