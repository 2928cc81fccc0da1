"""A retailer's digest: one SHA-256 Merkle root (ledger/merkle.py) over the head hash of every
stream of the retailer as the log stood at a position, and the audit path that proves one stream's
head is in it.

An auditor keeps a digest; later, the same root recomputed from the log at the same position
proves nothing up to that position was rewritten or cut (``coupon-ledger verify --digest``), and a
proof shows one coupon's head is under the root without the rest of the log.

The heads are read in one statement in a REPEATABLE READ snapshot, streamed (a server-side cursor),
so a digest over a million streams holds O(log n) hashes, not the streams.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg.sql import SQL, Identifier

from ledger.event_store import LedgerRecorder
from ledger.merkle import audit_path, leaf_data, leaf_hash, root_of

FETCH = 10_000


@dataclass(frozen=True)
class Head:
    stream: UUID
    version: int
    hash: bytes
    code: str | None


@dataclass(frozen=True)
class Tree:
    """The digest's facts: at ``position``, ``streams`` streams holding ``events`` events, and the root."""

    position: int
    events: int
    streams: int
    root: str


@dataclass(frozen=True)
class Proof:
    stream: UUID
    version: int
    head_hash: str
    leaf_index: int
    tree_size: int
    path: list[str]
    root: str


class AuditLog:
    def __init__(self, recorder: LedgerRecorder) -> None:
        self.recorder = recorder
        schema = Identifier(recorder.datastore.schema)
        events = Identifier(recorder.events_table_name)
        self._heads = SQL(
            "SELECT DISTINCT ON (originator_id) originator_id, originator_version, hash, code FROM {}.{}"
            " WHERE retailer_id = %s AND notification_id <= %s ORDER BY originator_id, originator_version DESC"
        ).format(schema, events)
        self._head_position = SQL("SELECT coalesce(max(notification_id), 0) AS n FROM {}.{}").format(schema, events)

    def position(self) -> int:
        """The log's newest position."""
        with self.recorder.datastore.get_connection() as conn:
            row = conn.execute(self._head_position).fetchone()
        return int(row["n"]) if row else 0

    def heads(self, retailer_id: UUID, position: int) -> Iterator[Head]:
        """Each stream of the retailer at ``position``: its newest event then, in stream id order."""
        with self.recorder.datastore.get_connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            with conn.cursor(name="digest_heads") as cursor:
                cursor.itersize = FETCH
                cursor.execute(self._heads, (retailer_id, position))
                for row in cursor:
                    yield Head(row["originator_id"], row["originator_version"], bytes(row["hash"]), row["code"])

    def tree(self, retailer_id: UUID, position: int) -> Tree:
        events = 0

        def leaves() -> Iterator[bytes]:
            nonlocal events
            for head in self.heads(retailer_id, position):
                events += head.version
                yield leaf_hash(leaf_data(head.stream, head.hash))

        root, streams = root_of(leaves())
        return Tree(position, events, streams, root.hex())

    def proof(self, retailer_id: UUID, stream: UUID, position: int) -> Proof | None:
        """The audit path from ``stream``'s head at ``position`` to the root; None if the stream
        had no event by then."""
        leaves: list[bytes] = []
        found: Head | None = None
        index = -1
        for head in self.heads(retailer_id, position):
            if head.stream == stream:
                found, index = head, len(leaves)
            leaves.append(leaf_hash(leaf_data(head.stream, head.hash)))
        if found is None:
            return None
        return Proof(
            stream=stream,
            version=found.version,
            head_hash=found.hash.hex(),
            leaf_index=index,
            tree_size=len(leaves),
            path=[h.hex() for h in audit_path(index, leaves)],
            root=root_of(leaves)[0].hex(),
        )


def tree_facts(tree: Tree) -> dict[str, Any]:
    return {"position": tree.position, "events": tree.events, "streams": tree.streams, "root": tree.root}
