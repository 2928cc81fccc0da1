"""One writer per process: every command that changes an aggregate is group-committed.

Callers queue commands; a single writer thread takes whatever has arrived, takes the aggregates
those commands need from memory (ledger/memory.py) or else brings them up to date in one query
(idempotency keys included), decides each command in arrival order against them, reads what a
command relied on from memory without writing it, and saves every event that passed in one
``save()``: one transaction, one lock of the events table, one commit. Then it answers each
caller with its own result or error. Inside a process nobody loses a version race any more.

Bulk work (a campaign's chunks of codes) goes in a second, background lane: the writer takes a
background command only when no live command is waiting, or when background commands have been
passed over ``background_every`` batches in a row (so bulk work still moves under steady traffic),
and never more than one per batch. A live command therefore waits behind at most one chunk.

Another process writing the same aggregate is still caught by the store's version check. On
such a conflict the writer re-reads the aggregates of the batch (one query), and re-decides
only the commands whose aggregates moved, together with every command that touched the same
aggregates after them; the others keep their decisions. After ``max_attempts`` conflicts the
commands still in conflict are answered with ``LedgerBusy``.

The batch, its commands and their answers are in ledger/batch.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from datetime import UTC, datetime
from time import perf_counter
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError
from psycopg import Connection

from ledger.batch import Batch, Command, WriterStats, settle
from ledger.clock import DECISION_TIME
from ledger.errors import LedgerBusy, StoreUnavailable
from ledger.event_store import (
    AggregateReader,
    LedgerRecorder,
    Work,
    WorkRefused,
    is_contention,
    is_database_unavailable,
)
from ledger.memory import Memory
from ledger.metrics import count_refusals, count_saved, metrics

log = logging.getLogger(__name__)
T = TypeVar("T")
Aggregate = Any
WAKE = object()  # put in the live queue to wake the writer for a background command


class BatchWriter:
    def __init__(
        self,
        app: Application[UUID],
        cached_types: tuple[type, ...],
        cache_maxsize: int = 20_000,
        max_batch: int = 256,
        max_attempts: int = 50,
        max_queue: int = 4096,
        max_contended: int = 3,
        background_every: int = 8,
        clock: Callable[[], datetime] | None = None,
        lock_rows: Callable[[Connection[Any], list[Any]], None] | None = None,
    ) -> None:
        self.app = app
        self.reader = AggregateReader(app)
        self.memory = Memory(cached_types, cache_maxsize)
        self.max_batch = max_batch
        self.max_attempts = max_attempts
        self.max_queue = max_queue
        self.max_contended = max_contended  # tries of a work that loses lock waits or deadlocks
        self.background_every = background_every
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        # Takes the row locks that the works of a batch declared, all together and in order, before
        # any work runs: two batches never wait on each other's rows in a circle.
        self.lock_rows = lock_rows
        self.stats = WriterStats()
        self._queue: queue.SimpleQueue[Command[Any] | object | None] = queue.SimpleQueue()
        self._background: deque[Command[Any]] = deque()  # bulk commands, taken one per batch at most
        self._passed_over = 0  # batches written since a background command was last taken
        self._room = threading.BoundedSemaphore(max_queue)  # places left in the queue
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._taken: list[Command[Any]] = []  # the batch the writer thread is working on

    # --- callers -------------------------------------------------------------------------------

    def submit(
        self,
        needs: Iterable[UUID],
        decide: Callable[[Batch], T],
        locks: Iterable[Any] = (),
        background: bool = False,
        created: Iterable[UUID] = (),
    ) -> Future[T]:
        """Queue the command; ``background``: in the bulk lane, behind every live command;
        ``created``: those of ``needs`` it creates when they do not exist (see ``load_from_memory``)."""
        command = Command(needs, decide, locks=locks, created=created)
        self._enqueue(command, background)
        assert isinstance(command.future, Future)
        return command.future

    def _enqueue(self, command: Command[Any], background: bool = False) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the writer is closed")
            if background:
                # Not counted against max_queue: each bulk caller has one command queued at a time.
                if self._thread is None or not self._thread.is_alive():
                    self._start()
                self._background.append(command)
                self._queue.put(WAKE)
                return
            if not self._room.acquire(blocking=False):
                self.stats.refused += 1
                if (m := metrics()) is not None:
                    m.queue_full.inc()
                raise LedgerBusy(
                    f"The ledger has {self.max_queue} commands waiting; retry shortly.",
                    retry_after=1,
                    reason="queue_full",
                )
            if self._thread is None or not self._thread.is_alive():
                self._start()
            self._queue.put(command)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def execute(
        self,
        needs: Iterable[UUID],
        decide: Callable[[Batch], T],
        locks: Iterable[Any] = (),
        background: bool = False,
        created: Iterable[UUID] = (),
    ) -> T:
        """Decide and save the command with the next batch; block until it is answered."""
        return self.submit(needs, decide, locks, background, created).result()

    async def execute_async(
        self,
        needs: Iterable[UUID],
        decide: Callable[[Batch], T],
        locks: Iterable[Any] = (),
        background: bool = False,
        created: Iterable[UUID] = (),
    ) -> T:
        """The same, awaited: no thread is held while the batch is written, and the whole batch's
        answers reach this loop in one wake-up."""
        command = Command(needs, decide, loop=asyncio.get_running_loop(), locks=locks, created=created)
        self._enqueue(command, background)
        assert isinstance(command.future, asyncio.Future)
        return await command.future

    @property
    def queued(self) -> int:
        """Commands waiting for the writer (approximate)."""
        return self._queue.qsize()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
            self._queue.put(None)
        if thread is not None:
            thread.join()
        left = list(self._background)
        self._background.clear()
        for command in left:  # never taken: its caller hears that the writer closed
            if command.is_wanted():
                command.outcome = (False, RuntimeError("the writer is closed"))
        self._answer(left)

    # --- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException:  # a bug: the batch in hand is answered, and a new thread goes on
            log.exception("the ledger writer stopped; starting it again")
            self.stats.restarts += 1
            taken, self._taken = self._taken, []
            for command in taken:
                command.reset()
                command.outcome = (
                    False,
                    LedgerBusy("The ledger's writer failed; retry shortly.", retry_after=1, reason="writer_failed"),
                )
            self._answer(taken)
            with self._lock:
                if not self._closed:
                    self._start()

    def _take(self, block: bool) -> Command[Any] | object | None:
        command = self._queue.get() if block else self._queue.get_nowait()
        if command is not None and command is not WAKE:
            self._room.release()
        return command

    def _serve(self) -> None:
        while True:
            # With background work waiting, do not block: an empty live queue is its turn.
            try:
                first = self._take(block=not self._background)
            except queue.Empty:
                first = WAKE
            if first is None:
                return
            if (m := metrics()) is not None:
                m.queue_depth.set(self._queue.qsize() + (first is not WAKE))
            commands: list[Command[Any]] = [] if first is WAKE else [first]  # type: ignore[list-item]
            self._taken = commands
            stop = False
            while len(commands) < self.max_batch:
                try:
                    command = self._take(block=False)
                except queue.Empty:
                    break
                if command is None:
                    stop = True
                    break
                if command is not WAKE:
                    commands.append(command)  # type: ignore[arg-type]
            self._add_background(commands)
            live = [c for c in commands if c.is_wanted()]
            self._taken = live
            if live:
                try:
                    self._write(live)
                except Exception as error:  # a lost database or a bug: every caller hears of it
                    self._failed(live, error)
                self._taken = []
                self._answer(live)
            if (m := metrics()) is not None:
                m.queue_depth.set(self._queue.qsize())  # what waits now: 0 when the writer is idle
            if stop:
                return

    def _add_background(self, commands: list[Command[Any]]) -> None:
        """One background command joins the batch if no live command is in it, or if background
        work has been passed over ``background_every`` batches in a row."""
        if not self._background:
            self._passed_over = 0
            return
        if commands and self._passed_over < self.background_every:
            self._passed_over += 1
            return
        self._passed_over = 0
        commands.append(self._background.popleft())

    def is_alive(self) -> bool:
        """False only if the writer thread has stopped without being closed (never expected)."""
        thread = self._thread
        return self._closed or thread is None or thread.is_alive()

    def _failed(self, commands: list[Command[Any]], error: BaseException) -> None:
        """Answer every command of a batch that could not be written. If the database was away or
        the connection was lost, even during the save (which then may or may not have committed),
        each gets StoreUnavailable (503): never a success that might not be stored, and a retry
        with the same idempotency key replays the redemption if the save did commit. The cache
        is left as it was: the next batch reads whatever was stored since."""
        if is_contention(error):
            log.warning("ledger writer: %s; %d commands answered 503", error, len(commands))
            for command in commands:
                command.reset()
                command.outcome = (False, busy(error))
            return
        if not is_database_unavailable(error):
            log.exception("ledger writer failed a batch of %d commands", len(commands), exc_info=error)
            for command in commands:
                command.outcome = (False, error)
            return
        log.warning("ledger writer: the database is unavailable (%s); %d commands answered 503", error, len(commands))
        for command in commands:
            command.reset()
            command.outcome = (
                False,
                StoreUnavailable(
                    "The database is unavailable; retry shortly with the same Idempotency-Key.", retry_after=1
                ),
            )
        # Drop the pool's connections that died with the database, so that the next batch, once it
        # is back, does not fail on one of them.
        recorder = self.app.recorder
        if isinstance(recorder, LedgerRecorder):
            try:
                recorder.datastore.pool.check()
            except Exception:
                log.debug("pool check failed", exc_info=True)

    def load_from_memory(self, batch: Batch, commands: list[Command[Any]]) -> None:
        """Put what the commands need into the batch from memory (ledger/memory.py), unverified;
        or, if anything must be read, read it all (one query, as ``load``)."""
        held = self.memory.decidable((i, i in c.created) for c in commands for i in c.needs)
        if held is None:
            self.load(batch, (i for c in commands for i in c.needs))
            return
        for aggregate_id, aggregate in held.items():
            batch.base[aggregate_id] = batch.current[aggregate_id] = aggregate
        batch.unverified.update(held)

    def verify(self, batch: Batch, commands: list[Command[Any]]) -> list[Command[Any]]:
        """Read the unverified aggregates that a decided command relied on without writing them (a
        refusal, a read-only check): the store's version check does not cover those. Return the
        commands to decide again because one of them had moved (none if nothing was read or moved)."""
        unverified = batch.unverified
        relied: dict[UUID, Aggregate | None] = {}
        for command in commands:
            if command.outcome is None:
                continue
            written = {e.originator_id for e in command.events} if command.outcome[0] else ()
            for aggregate_id in command.touched:
                if aggregate_id in unverified and aggregate_id not in written:
                    relied[aggregate_id] = batch.base[aggregate_id]
        if not relied:
            return []
        self.stats.reads += 1
        unverified.difference_update(relied)
        moved = self._rebase(batch, self.reader.catch_up(relied))
        return self._redecide(batch, commands, moved) if moved else []

    def _rebase(self, batch: Batch, fresh: dict[UUID, Aggregate | None]) -> set[UUID]:
        """Take the aggregates read afresh as the batch's base; return the ids of those that moved."""
        self.memory.written_elsewhere(batch.base, fresh)
        moved = {i for i, aggregate in fresh.items() if aggregate is not batch.base[i]}
        for aggregate_id in moved:
            batch.base[aggregate_id] = fresh[aggregate_id]
        return moved

    def load(self, batch: Batch, ids: Iterable[UUID]) -> None:
        """Bring these aggregates up to date in the batch (one query for all of them)."""
        known: dict[UUID, Aggregate | None] = {}
        for aggregate_id in ids:
            if aggregate_id in batch.current or aggregate_id in known:
                continue
            known[aggregate_id] = self.memory.get(aggregate_id)
        if not known:
            return
        self.stats.reads += 1
        fresh = self.reader.catch_up(known)
        self.memory.written_elsewhere(known, fresh)
        for aggregate_id, aggregate in fresh.items():
            batch.base[aggregate_id] = batch.current[aggregate_id] = aggregate

    def _write(self, commands: list[Command[Any]]) -> None:
        m = metrics()
        batch = Batch(self)
        self.load_from_memory(batch, commands)
        pending = commands
        conflicts = contended = 0
        while True:
            while pending:
                for command in pending:
                    self._decide(batch, command)
                pending = self.verify(batch, commands) if batch.unverified else []
            saving = [c for c in commands if c.outcome is not None and c.outcome[0]]
            events = [e for c in saving for e in c.events]
            works = [c for c in saving if c.work is not None]
            try:
                if events or works:
                    started = perf_counter()
                    done = self._save(events, self._snapshots(batch, saving), works)
                    if m is not None:
                        m.save_seconds.observe(perf_counter() - started)
                else:
                    done = {}
            except WorkRefused as refused:
                # Nothing was saved; the refused commands fail alone, and whatever built on them
                # is decided again without them.
                pending = self._after_refusal(batch, commands, refused.failures)
                if m is not None:
                    m.conflicts.labels("work").inc()
                    m.redecided.inc(len(pending))
                continue
            except Exception as error:
                if not isinstance(error, IntegrityError) and not is_contention(error):
                    raise
                # Another process wrote the same aggregates first (or the database broke a
                # deadlock, or a lock was not granted in time): read again, decide again.
                conflicts += 1
                contended += is_contention(error)
                self.stats.conflicts += 1
                pending = self._after_conflict(batch, commands)
                # A lock that is not granted is waited for up to lock_timeout each time: fewer tries.
                if conflicts >= self.max_attempts or contended >= self.max_contended:
                    for command in pending:
                        self._give_up(batch, command, error)
                    if m is not None:
                        m.gave_up.inc(len(pending))
                    pending = []
                if m is not None:
                    m.conflicts.labels("lock" if is_contention(error) else "version").inc()
                    m.redecided.inc(len(pending))
                time.sleep(random.uniform(0, min(0.02, 0.0005 * 2**conflicts)))
                batch.new_attempt()
                continue
            break
        # Only now, committed: the answers made in the save's transaction reach their callers.
        for command, result in done.items():
            command.outcome = (True, result)
        self.stats.batches += 1
        self.stats.commands += len(commands)
        self.stats.events += len(events)
        self.memory.remember(batch.current)  # what is now stored
        if m is not None:
            count_saved(m, len(commands), events)

    @staticmethod
    def _answer(commands: list[Command[Any]]) -> None:
        if (m := metrics()) is not None:
            count_refusals(m, commands)
        by_loop: dict[asyncio.AbstractEventLoop, list[Command[Any]]] = {}
        for command in commands:
            if command.loop is None:
                settle([command])
            else:
                by_loop.setdefault(command.loop, []).append(command)
        for loop, waiting in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(settle, waiting)

    def _decide(self, batch: Batch, command: Command[Any]) -> None:
        command.reset()
        batch.command = command
        token = DECISION_TIME.set(lambda: batch.now)
        try:
            result = command.decide(batch)
        except Exception as error:
            for aggregate_id, previous in command.touched.items():
                batch.current[aggregate_id] = previous
            # What it read stays in ``touched``: if those aggregates move, it is decided again.
            command.work = None
            command.outcome = (False, error)
        else:
            for aggregate_id in command.touched:
                aggregate = batch.current[aggregate_id]
                if aggregate is not None:
                    command.events.extend(aggregate.collect_events())
            for made in command.events:
                object.__setattr__(made, "actor", command.actor)  # recorded with the event, hashed with it
            command.outcome = (True, result)
        finally:
            DECISION_TIME.reset(token)
            batch.command = None

    def _after_refusal(
        self, batch: Batch, commands: list[Command[Any]], failures: dict[Any, Exception]
    ) -> list[Command[Any]]:
        affected: set[UUID] = set()
        again: list[Command[Any]] = []
        for command, error in failures.items():
            affected.update(command.touched)
            command.reset()
            command.outcome = (False, error)
            if is_contention(error):
                command.contended += 1
                self.stats.conflicts += 1
                if command.contended < self.max_contended:
                    again.append(command)  # decided again, on its own: the others are not held up
                else:
                    command.outcome = (False, busy(error))
        pending = self._redecide(batch, commands, affected)
        return [c for c in commands if c in again or c in pending]

    def _after_conflict(self, batch: Batch, commands: list[Command[Any]]) -> list[Command[Any]]:
        """Re-read the batch's aggregates; return the commands to decide again, in arrival order."""
        self.stats.reads += 1
        batch.unverified.clear()
        moved = self._rebase(batch, self.reader.catch_up(dict(batch.base)))
        if not moved:  # rejected for a reason the store does not show: decide everything again
            moved = set(batch.base)
            return self._redecide(batch, commands, moved) + [
                c for c in commands if not c.touched and c.outcome is not None and c.outcome[0]
            ]
        return self._redecide(batch, commands, moved)

    @staticmethod
    def _redecide(batch: Batch, commands: list[Command[Any]], moved: set[UUID]) -> list[Command[Any]]:
        """Put the moved aggregates back to their base; return the commands to decide again."""
        # Whatever touched a moved aggregate is decided again, and so is everything that touched
        # the same aggregates as those commands: their decisions built on each other.
        affected = set(moved)
        rerun: set[Command[Any]] = set()
        grew = True
        while grew:
            size = len(affected)
            for command in commands:
                if command not in rerun and affected.intersection(command.touched):
                    rerun.add(command)
                    affected.update(command.touched)
            grew = len(affected) != size
        for aggregate_id in affected:
            batch.current[aggregate_id] = batch.base[aggregate_id]
        return [c for c in commands if c in rerun]

    def _give_up(self, batch: Batch, command: Command[Any], error: Exception) -> None:
        for aggregate_id in command.touched:
            batch.current[aggregate_id] = batch.base[aggregate_id]
        command.reset()
        if is_contention(error):
            command.outcome = (False, busy(error))
        else:
            command.outcome = (
                False,
                LedgerBusy(
                    "The ledger is under heavy concurrent use; retry shortly.", retry_after=1, reason="contention"
                ),
            )

    def _snapshots(self, batch: Batch, saving: list[Command[Any]]) -> list[Any]:
        """Snapshots of the aggregates this save takes past a multiple of their interval."""
        intervals = self.app.snapshotting_intervals
        if self.app.snapshots is None or not intervals:
            return []
        snapshots = []
        for aggregate_id in {e.originator_id for c in saving for e in c.events}:
            aggregate = batch.current[aggregate_id]
            if aggregate is None:
                continue
            interval = intervals.get(type(aggregate))
            if not interval:
                continue
            before = batch.base[aggregate_id]
            if aggregate.version // interval > (before.version if before is not None else 0) // interval:
                snapshots.append(type(aggregate).Snapshot.take(aggregate))
        return snapshots

    def _save(self, events: list[Any], snapshots: list[Any], works: list[Command[Any]]) -> dict[Command[Any], Any]:
        """One transaction for the batch's events and, on PostgreSQL, its snapshots and the
        commands' works too. Returns what each work returned, once the transaction committed."""
        if works:
            if not isinstance(self.app.recorder, LedgerRecorder):
                raise TypeError("work in the save's transaction needs the PostgreSQL recorder")
            results: dict[Command[Any], Any] = {}
            locks = sorted({lock for c in works for lock in c.locks})

            def prepare(connection: Connection[Any]) -> None:
                if locks and self.lock_rows is not None:
                    self.lock_rows(connection, locks)

            def run(command: Command[Any]) -> Work:
                then = command.work
                assert then is not None

                def work(connection: Connection[Any]) -> None:
                    results[command] = then.work(connection)

                return work

            stored = [self.app.mapper.to_stored_event(s) for s in snapshots]
            if events:
                self.app.save(*events, snapshots=stored, works=[(c, run(c)) for c in works], prepare=prepare)
            else:
                self.app.recorder.run_works([(c, run(c)) for c in works], prepare=prepare)
            self.stats.snapshots += len(snapshots)
            return results
        if not snapshots:
            self.app.save(*events)
        elif isinstance(self.app.recorder, LedgerRecorder):
            self.app.save(*events, snapshots=[self.app.mapper.to_stored_event(s) for s in snapshots])
            self.stats.snapshots += len(snapshots)
        else:  # another store: snapshots after the events, in a transaction of their own
            self.app.save(*events)
            assert self.app.snapshots is not None
            self.app.snapshots.put(snapshots)
            self.stats.snapshots += len(snapshots)
        return {}


def busy(error: BaseException) -> LedgerBusy:
    return LedgerBusy(
        "The database could not give the ledger its locks in time (a deadlock, a lock timeout or a"
        " cancelled statement) even after retries; retry shortly.",
        retry_after=1,
        reason="lock_contention",
    )
