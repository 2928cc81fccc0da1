"""What the writer holds in memory, and when it may decide from it without a read.

The writer keeps each aggregate it stores (of the cached types) as it stored it. A batch may be
decided from those, and an aggregate a command creates when it does not exist (an idempotency key's
redemption) taken as new, with no read of the store: the save's version check refuses a save built
on an aggregate that another process wrote since, or creating one that exists, and the batch is then
decided again on a fresh read. Only what a command relied on without writing it must be read before
the save (``BatchWriter.verify``). A redemption this writer stored lately is not held but remembered,
so that a retry of its key in this process is read (and replayed) rather than refused at the save.

Where other processes write too (several workers, another server on the same database), a decision
from memory would be refused at many saves, and one refused save fails its whole batch. So once a
read finds a held aggregate written elsewhere, every batch reads first, as if nothing were held, for
``READ_FIRST_SECONDS`` after the last time it found one.
"""

from __future__ import annotations

from collections.abc import Iterable
from time import monotonic
from typing import Any
from uuid import UUID

from eventsourcing.application import LRUCache

Aggregate = Any

READ_FIRST_SECONDS = 10.0
STORED_MAX = 100_000


class Memory:
    def __init__(self, cached_types: tuple[type, ...], maxsize: int) -> None:
        self.cached_types = cached_types
        self.cache: LRUCache[UUID, Aggregate] = LRUCache(maxsize=maxsize)
        self.read_first_until = 0.0  # monotonic time: until then every batch reads first
        # Ids of aggregates stored lately that are not held (redemptions): a command that would
        # create one of them reads it instead.
        self.stored: LRUCache[UUID, bool] = LRUCache(maxsize=STORED_MAX)

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        """The aggregate as this writer last stored it, or None if it does not hold it."""
        try:
            return self.cache.get(aggregate_id)
        except KeyError:
            return None

    def decidable(self, wanted: Iterable[tuple[UUID, bool]]) -> dict[UUID, Aggregate | None] | None:
        """For (id, created) pairs, each id's aggregate as held (None for one created, if not
        held); or None if the batch must read first: one is neither held nor created, or another
        process has written lately."""
        if self.read_first_until and monotonic() < self.read_first_until:
            return None
        held: dict[UUID, Aggregate | None] = {}
        for aggregate_id, created in wanted:
            if aggregate_id in held:
                continue
            try:
                held[aggregate_id] = self.cache.get(aggregate_id)
            except KeyError:
                if not created or self._was_stored(aggregate_id):
                    return None
                held[aggregate_id] = None
        return held

    def written_elsewhere(self, before: dict[UUID, Aggregate | None], fresh: dict[UUID, Aggregate | None]) -> None:
        """Of the aggregates read afresh, one held (``before``) that had moved was written by another
        process: batches read first from now on, for a while."""
        for aggregate_id, aggregate in fresh.items():
            held = before.get(aggregate_id)
            if held is not None and aggregate is not held:
                self.read_first_until = monotonic() + READ_FIRST_SECONDS
                return

    def _was_stored(self, aggregate_id: UUID) -> bool:
        try:
            return self.stored.get(aggregate_id)
        except KeyError:
            return False

    def remember(self, aggregates: dict[UUID, Aggregate | None]) -> None:
        """Hold what a committed save left (of the cached types); remember the ids of the others."""
        for aggregate_id, aggregate in aggregates.items():
            if isinstance(aggregate, self.cached_types):
                self.cache.put(aggregate_id, aggregate)
            elif aggregate is not None:
                self.stored.put(aggregate_id, True)
