"""What the writer decides a batch with: each queued command (its caller's future, what it
touched, its events and its work), and the batch's aggregates as the commands decided so far have
left them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

from psycopg import Connection

from ledger.actors import current_actor
from ledger.event_store import copy_aggregate


class Loader(Protocol):
    """What a batch needs of its writer: the one clock, and reading aggregates into the batch."""

    clock: Callable[[], datetime]

    def load(self, batch: Batch, ids: Iterable[UUID]) -> None: ...


T = TypeVar("T")
Aggregate = Any


class Command(Generic[T]):
    """A change to decide against the batch: ``decide`` reads and changes aggregates through the
    batch and returns the caller's answer, or raises to reject the command."""

    __slots__ = (
        "actor",
        "contended",
        "created",
        "decide",
        "events",
        "future",
        "locks",
        "loop",
        "needs",
        "outcome",
        "touched",
        "work",
    )

    def __init__(
        self,
        needs: Iterable[UUID],
        decide: Callable[[Batch], T],
        loop: asyncio.AbstractEventLoop | None = None,
        locks: Iterable[Any] = (),
        created: Iterable[UUID] = (),
    ) -> None:
        self.needs = tuple(needs)
        # Of those, the ones it creates when they do not exist (a redemption's idempotency key):
        # the writer may take them as new without reading them (see BatchWriter.load_from_memory).
        self.created = tuple(created)
        # Who asked (read in the caller's context, as it queues the command): its events record it.
        self.actor = current_actor().as_data()
        self.locks = tuple(locks)  # rows its work will lock (see BatchWriter.lock_rows)
        self.contended = 0  # times its work lost a lock wait or a deadlock
        self.decide = decide
        # A caller on an event loop awaits an asyncio future, settled in its loop; others block on a Future.
        self.loop = loop
        self.future: Future[T] | asyncio.Future[T] = loop.create_future() if loop is not None else Future()
        self.touched: dict[UUID, Aggregate | None] = {}  # id -> the state before this command
        self.events: list[Any] = []
        self.work: Then[Any] | None = None  # run in the transaction that saves this command's events
        self.outcome: tuple[bool, Any] | None = None  # (succeeded, result or error)

    def is_wanted(self) -> bool:
        """False if its caller gave up before the writer took it (then it is not decided at all)."""
        if isinstance(self.future, Future):
            return self.future.set_running_or_notify_cancel()
        return not self.future.cancelled()

    def reset(self) -> None:
        self.touched = {}
        self.events = []
        self.work = None
        self.outcome = None


class Then(Generic[T]):
    """What a command answers when its answer is made in the save's transaction: the result of
    ``work(connection)`` in the attempt that committed (see ``Batch.then``)."""

    __slots__ = ("work",)

    def __init__(self, work: Callable[[Connection[Any]], T]) -> None:
        self.work = work


class Batch:
    """The aggregates of one batch as the commands decided so far have left them."""

    def __init__(self, writer: Loader) -> None:
        self._writer = writer
        self.base: dict[UUID, Aggregate | None] = {}  # as stored, before this batch
        self.current: dict[UUID, Aggregate | None] = {}
        # Taken from the writer's memory (or as new) without a read: each must be read, or written
        # by the command that relied on it, before the batch is saved (see BatchWriter.verify).
        self.unverified: set[UUID] = set()
        self.command: Command[Any] | None = None
        self._now: datetime | None = None

    @property
    def now(self) -> datetime:
        """The time of this attempt's decisions: read once, when a handler first asks (after it has
        read its aggregates), from the ledger's one clock."""
        if self._now is None:
            self._now = self._writer.clock()
        return self._now

    def new_attempt(self) -> None:
        self._now = None

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        """The aggregate with this id, or None if it does not exist."""
        if aggregate_id not in self.current:
            self._writer.load(self, [aggregate_id])
        command = self.command
        assert command is not None
        if aggregate_id in command.touched:
            return self.current[aggregate_id]
        previous = self.current[aggregate_id]
        command.touched[aggregate_id] = previous
        if previous is None:
            return None
        # Each command changes its own copy, so a rejected command is undone by putting the
        # previous state back, and an aggregate returned to a caller is never changed later.
        clone = copy_aggregate(previous)
        self.current[aggregate_id] = clone
        return clone

    def prefetch(self, aggregate_ids: Iterable[UUID]) -> None:
        """Bring these aggregates up to date in one query, before the command ``get``s them one by
        one (each ``get`` of an aggregate the batch has not read is a query of its own)."""
        self._writer.load(self, aggregate_ids)

    def add(self, aggregate: Aggregate) -> None:
        """Register an aggregate this command creates. Check with ``get`` first when the id may be
        taken; an id the batch has not read is taken to be new (the store's version check
        rejects it otherwise, and the command is then decided again)."""
        aggregate_id = aggregate.id
        if self.current.get(aggregate_id) is not None:
            raise ValueError(f"aggregate {aggregate_id} already exists")
        command = self.command
        assert command is not None
        command.touched.setdefault(aggregate_id, None)
        self.base.setdefault(aggregate_id, None)
        self.current[aggregate_id] = aggregate

    def then(self, work: Callable[[Connection[Any]], T]) -> Then[T]:
        """Run ``work(connection)`` in the transaction that saves this command's events (on
        PostgreSQL), even if it has none: the command's events are stored if and only if its work
        succeeds, and the command answers what ``work`` returned in the transaction that committed
        (the handler returns what this returns). Work that raises refuses this command alone, with
        that error; the others of the batch are saved."""
        command = self.command
        assert command is not None
        then = Then(work)
        command.work = then
        return then


def settle(commands: list[Command[Any]]) -> None:
    """Give each caller its answer (in the caller's loop, for asyncio futures)."""
    for command in commands:
        future = command.future
        if future.done():  # cancelled by its caller
            continue
        succeeded, value = command.outcome or (False, RuntimeError("the command was not decided"))
        if succeeded and isinstance(value, Then):  # the save never ran its work: never expected
            succeeded, value = False, RuntimeError("the command's work did not run")
        if succeeded:
            future.set_result(value)
        else:
            future.set_exception(value)


class WriterStats:
    """Counters for benchmarks and tests (read without a lock: approximate while running)."""

    def __init__(self) -> None:
        self.batches = 0
        self.commands = 0
        self.events = 0
        self.reads = 0
        self.conflicts = 0
        self.snapshots = 0
        self.refused = 0  # commands refused because the queue was full
        self.restarts = 0  # writer threads started again after one died
