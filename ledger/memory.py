"""What the writer holds in memory, and when it may decide from it without a read.

The writer keeps each aggregate it stores (of the cached types) as it stored it. A batch may be
decided from those, and an aggregate a command creates when it does not exist (an idempotency key's
redemption) taken as new, with no read of the store: the save's version check refuses a save built
on an aggregate that another process wrote since, or creating one that exists, and the batch is then
decided again on a fresh read. Only what a command relied on without writing it must be read before
the save (``BatchWriter.verify``).

Under contention between processes, though, a decision from memory would be refused at nearly every
save. So an aggregate found written elsewhere is read before each decision for a while
(``READ_FIRST_SECONDS`` after it was last found so).
"""

from __future__ import annotations

from collections.abc import Iterable
from time import monotonic
from typing import Any
from uuid import UUID

from eventsourcing.application import LRUCache

Aggregate = Any

READ_FIRST_SECONDS = 10.0
READ_FIRST_MAX = 100_000  # aggregates remembered as written elsewhere; past it, those expired are dropped


class Memory:
    def __init__(self, cached_types: tuple[type, ...], maxsize: int) -> None:
        self.cached_types = cached_types
        self.cache: LRUCache[UUID, Aggregate] = LRUCache(maxsize=maxsize)
        self._read_first: dict[UUID, float] = {}  # aggregate id -> until when to read it first

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        """The aggregate as this writer last stored it, or None if it does not hold it."""
        try:
            return self.cache.get(aggregate_id)
        except KeyError:
            return None

    def decidable(self, wanted: Iterable[tuple[UUID, bool]]) -> dict[UUID, Aggregate | None] | None:
        """For (id, created) pairs, each id's aggregate as held (None for one created, if not
        held); or None if any must be read first: one not held and not created, or one written
        elsewhere lately."""
        held: dict[UUID, Aggregate | None] = {}
        now = monotonic()
        read_first = self._read_first
        for aggregate_id, created in wanted:
            if aggregate_id in held:
                continue
            try:
                aggregate = self.cache.get(aggregate_id)
            except KeyError:
                if not created:
                    return None
                aggregate = None
            else:
                if read_first and read_first.get(aggregate_id, 0.0) > now:
                    return None
            held[aggregate_id] = aggregate
        return held

    def written_elsewhere(self, before: dict[UUID, Aggregate | None], fresh: dict[UUID, Aggregate | None]) -> None:
        """Of the aggregates read afresh, those held (``before``) that had moved were written by
        another process: read them first from now on, for a while."""
        moved = [i for i, aggregate in fresh.items() if before.get(i) is not None and aggregate is not before[i]]
        if not moved:
            return
        until = monotonic() + READ_FIRST_SECONDS
        read_first = self._read_first
        for aggregate_id in moved:
            read_first[aggregate_id] = until
        if len(read_first) > READ_FIRST_MAX:
            now = monotonic()
            for aggregate_id in [i for i, t in read_first.items() if t <= now]:
                del read_first[aggregate_id]
            if len(read_first) > READ_FIRST_MAX:
                read_first.clear()

    def remember(self, aggregates: dict[UUID, Aggregate | None]) -> None:
        """Hold what a committed save left (of the cached types)."""
        for aggregate_id, aggregate in aggregates.items():
            if isinstance(aggregate, self.cached_types):
                self.cache.put(aggregate_id, aggregate)
