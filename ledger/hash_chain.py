"""Linking each event to the one before it in its stream, as it is written.

Every event is stored with its ``prev_hash`` and ``hash`` (ledger/served_events.py) and its
stream's owner (the retailer, and the coupon's code where the stream belongs to a coupon), in the
same statement that stores it. The optimistic version check makes the link safe: an event of
version N is linked to the hash of version N-1, and if another process wrote a version N first, the
save fails and the command is decided again against the new head.

The head of each recently written stream is remembered, so a popular coupon is linked without a
read; a stream whose head is not known is read once, for the whole save, by primary key.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol
from uuid import UUID

from eventsourcing.application import LRUCache

from ledger.served_events import ZERO_HASH, hash_of_event


class Head(NamedTuple):  # a tuple: the writer makes one for every event it stores
    """A stream's newest event as stored: its version and hash, and the stream's owner."""

    version: int
    hash: str
    retailer_id: UUID | None
    code: str | None


@dataclass(frozen=True)
class Links:
    """What a save stores beside its events, in their order."""

    retailer_ids: list[UUID | None]
    codes: list[str | None]
    prev_hashes: list[bytes]
    hashes: list[bytes]
    heads: dict[UUID, Head]  # each stream's new head, once the save commits


class ReadsHeads(Protocol):
    def read_heads(self, wanted: Sequence[tuple[UUID, int]]) -> dict[tuple[UUID, int], Head]: ...


class UnchainedStream(Exception):
    """An event to link to has no hash: the store was not chained (``coupon-ledger migrate``)."""


def owner_of(event: Any) -> tuple[UUID | None, str | None] | UUID:
    """The owner a stream's first event names (retailer, code), or the id of the coupon whose
    owner it shares (a customer's uses of a coupon)."""
    retailer_id = getattr(event, "retailer_id", None)
    if retailer_id is not None:
        code = getattr(event, "code", None)
        # The owner's code is a label (the hash covers the event's own data): PostgreSQL's text
        # cannot hold NUL, which only an event written past every check could carry.
        return retailer_id, code.replace("\x00", "\ufffd") if isinstance(code, str) else None
    coupon_id = getattr(event, "coupon_id", None)
    if isinstance(coupon_id, UUID):
        return coupon_id
    return None, None


class HashChain:
    def __init__(self, store: ReadsHeads, maxsize: int = 100_000) -> None:
        self.store = store
        self._heads: LRUCache[UUID, Head] = LRUCache(maxsize=maxsize)
        self._lock = threading.Lock()

    def links(self, events: Sequence[Any]) -> Links:
        """The links of a save's events (in save order; a stream's events in version order)."""
        known, owners = self._known(events)
        retailer_ids: list[UUID | None] = []
        codes: list[str | None] = []
        prev_hashes: list[bytes] = []
        hashes: list[bytes] = []
        heads: dict[UUID, Head] = {}
        for event in events:
            stream = event.originator_id
            version = event.originator_version
            head = heads.get(stream) or known.get(stream)
            if version == 1:
                prev = ZERO_HASH
                owner = owner_of(event)
                if isinstance(owner, UUID):
                    coupon = heads.get(owner) or owners.get(owner) or known.get(owner)
                    owner = (coupon.retailer_id, coupon.code) if coupon is not None else (None, None)
                retailer_id, code = owner
            else:
                if head is None or head.version != version - 1:
                    raise UnchainedStream(f"stream {stream} has no hash at version {version - 1}")
                prev, retailer_id, code = head.hash, head.retailer_id, head.code
            digest = hash_of_event(prev, event)
            heads[stream] = Head(version, digest, retailer_id, code)
            retailer_ids.append(retailer_id)
            codes.append(code)
            prev_hashes.append(bytes.fromhex(prev))
            hashes.append(bytes.fromhex(digest))
        return Links(retailer_ids, codes, prev_hashes, hashes, heads)

    def committed(self, links: Links) -> None:
        """Remember the heads a save stored (only once it committed)."""
        with self._lock:
            for stream, head in links.heads.items():
                self._heads.put(stream, head)

    def _known(self, events: Iterable[Any]) -> tuple[dict[UUID, Head], dict[UUID, Head]]:
        """What the save links to: the head before each stream's first event in it, and the
        coupons whose owner a new stream shares; from memory, else read in one query."""
        before: dict[UUID, int] = {}  # stream -> the version its first event in the save follows
        coupons: set[UUID] = set()
        for event in events:
            stream = event.originator_id
            if stream in before:
                continue
            before[stream] = event.originator_version - 1
            if event.originator_version == 1:
                owner = owner_of(event)
                if isinstance(owner, UUID):
                    coupons.add(owner)
        heads: dict[UUID, Head] = {}
        owners: dict[UUID, Head] = {}
        missing: list[tuple[UUID, int]] = []
        with self._lock:
            for stream, version in before.items():
                if version == 0:
                    continue
                head = self._cached(stream)
                if head is not None and head.version == version:
                    heads[stream] = head
                else:
                    missing.append((stream, version))
            for coupon_id in coupons - before.keys():
                head = self._cached(coupon_id)
                if head is not None:
                    owners[coupon_id] = head
                else:
                    missing.append((coupon_id, 1))
        if missing:
            for (stream, version), head in self.store.read_heads(missing).items():
                if stream in coupons and version == 1 and stream not in before:
                    owners[stream] = head
                else:
                    heads[stream] = head
        return heads, owners

    def _cached(self, stream: UUID) -> Head | None:
        try:
            return self._heads.get(stream)
        except KeyError:
            return None
