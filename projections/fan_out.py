"""Several projections of the ledger fed from ONE subscription: the log is pulled and each event
decoded once, however many projections read it.

`FanOutRunner` subscribes to the ledger from the earliest position any of its projections has
reached (and to the union of their topics) and takes the log in batches as the batching runner
does (projections/runner.py `batches`). Each projection gets the events of a batch that are of its
topics and past its own tracking record: one that neither lingers nor paces applies them there
and then, with its `process_events`; the others get them on a queue, and a thread of their own
makes batches of them (up to ``max_batch_size``). One that lingers (the webhooks' outbox) waits up
to its linger after an event for more. One that paces (the coupons projection, whose writes are
read back at once) starts a batch at once after a quiet spell, and otherwise no sooner than its
pace after the start of the one before: under load its batches hold the events of a whole pace
(fewer statements, tracking records and commits for the same events, in the projection and in
PostgreSQL), and a write made when the ledger is quiet is still projected at once. Each batch is
applied in its own transaction with the projection's own tracking record, exactly as that
projection's own runner would, so each keeps its exactly-once guarantee on its own; they only
share the reading.

An error in any thread (the subscription, the fan-out or a worker) stops the whole runner and is
raised by `run_forever`, as the library's ProjectionRunner does: the leader then starts again,
every projection from its own tracking record.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from eventsourcing.persistence import InfrastructureFactory, TrackingRecorder
from eventsourcing.projection import ApplicationSubscription, Projection
from eventsourcing.utils import Environment, EnvType, get_topic

from ledger.application import CouponLedger
from ledger.metrics import metrics
from projections.runner import Batch, ProcessesBatches, batches

_STOP = None  # put on a worker's queue: no more batches


@dataclass(frozen=True)
class ProjectionSpec:
    """A projection the leader runs: its classes, the advisory lock that elects the one process
    that runs it, how long its batches may linger for more events after the first (seconds), and
    its pace: the least time between the starts of two of its batches (seconds; see the module)."""

    projection_class: type[Projection[Any]]
    view_class: type[TrackingRecorder]
    lock_key: int
    linger: float = 0.0
    pace: float = 0.0


class Member:
    """One projection of a FanOutRunner: its view, its position, its queue and its worker thread."""

    def __init__(self, spec: ProjectionSpec, app_name: str, env: EnvType, max_batch_size: int) -> None:
        if not issubclass(spec.projection_class, ProcessesBatches):
            raise TypeError(f"{spec.projection_class.__name__} has no process_events(batch)")
        for name, seconds in (("linger", spec.linger), ("pace", spec.pace)):
            if not 0 <= seconds <= 1:
                raise ValueError(f"{name} must be between 0 and 1 second, got {seconds}")
        self.spec = spec
        self.view: TrackingRecorder = (
            InfrastructureFactory[TrackingRecorder]
            .construct(env=Environment(spec.projection_class.name, dict(env)))
            .tracking_recorder(spec.view_class)
        )
        self.projection = spec.projection_class(view=self.view)
        self.topics = frozenset(self.projection.topics)
        self.position = self.view.max_tracking_id(app_name)  # the last event handed to the worker
        self.max_batch_size = max_batch_size
        self.queue: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()

    @property
    def queued(self) -> bool:
        """Whether its batches may wait for more events (it lingers or paces): then they are made
        and applied by its own worker thread; otherwise the fan-out thread applies each batch as
        it comes."""
        return self.spec.linger > 0 or self.spec.pace > 0

    def offer(self, batch: Batch) -> None:
        """Apply (or queue, if it lingers or paces) the batch's events that are this projection's
        and past its position."""
        position = self.position or 0
        topics = self.topics
        if not topics and batch[0][1].notification_id > position:
            mine = batch  # all of it: the usual case of a projection of every event
        else:
            mine = [
                item
                for item in batch
                if item[1].notification_id > position and (not topics or get_topic(type(item[0])) in topics)
            ]
        if not mine:
            return
        self.position = mine[-1][1].notification_id
        if self.queued:
            self.queue.put(mine)
        else:
            self.apply(mine)

    def apply(self, batch: Batch) -> None:
        assert isinstance(self.projection, ProcessesBatches)
        started = time.perf_counter()
        self.projection.process_events(batch)
        if (m := metrics()) is not None:
            m.projection_batch_seconds.observe(time.perf_counter() - started)
            m.projected_events.inc(len(batch))

    def work(self) -> None:
        """Apply the queued events in batches until told to stop (a stop drops the batch being
        gathered: none of it was written, and the next runner starts again from the tracking record)."""
        carry: Batch = []
        linger, pace = self.spec.linger, self.spec.pace
        last_start = -pace  # no batch yet: the first starts at once
        while True:
            if not carry:
                first = self.queue.get()
                if first is _STOP:
                    return
                carry = first
            deadline = max(time.monotonic() + linger, last_start + pace)
            while len(carry) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    more = self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait()
                except queue.Empty:
                    if remaining <= 0:
                        break
                    continue
                if more is _STOP:
                    return
                carry.extend(more)
            batch, carry = carry[: self.max_batch_size], carry[self.max_batch_size :]
            last_start = time.monotonic()
            self.apply(batch)


class FanOutRunner:
    """Runs ``specs``' projections of the ledger from one subscription (see the module)."""

    def __init__(self, *, specs: Sequence[ProjectionSpec], env: EnvType, max_batch_size: int) -> None:
        if not specs:
            raise ValueError("no projection to run")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.max_batch_size = max_batch_size
        self.app = CouponLedger(dict(env))
        self.members: list[Member] = []
        try:  # a database that cannot be reached now leaves no pool open behind it
            for spec in specs:
                self.members.append(Member(spec, self.app.name, env, max_batch_size))
            positions = [member.position for member in self.members]
            start = None if None in positions else min(p for p in positions if p is not None)
            topics: tuple[str, ...] = ()
            if all(member.topics for member in self.members):
                topics = tuple(sorted(set().union(*(member.topics for member in self.members))))
            self.subscription = ApplicationSubscription(app=self.app, gt=start, topics=topics).__enter__()
        except BaseException:
            self._close()
            raise
        self.is_interrupted = threading.Event()
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []

    def view_of(self, projection_class: type[Projection[Any]]) -> TrackingRecorder | None:
        for member in self.members:
            if issubclass(member.spec.projection_class, projection_class):
                return member.view
        return None

    def start(self) -> FanOutRunner:
        self._threads = [
            threading.Thread(target=self._guard, args=(self._fan_out,), name="projections-fan-out", daemon=True),
            threading.Thread(target=self._stop_subscription_when_interrupted, name="projections-stop", daemon=True),
        ] + [
            threading.Thread(target=self._guard, args=(m.work,), name=f"{m.projection.name}-worker", daemon=True)
            for m in self.members
            if m.queued
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _fan_out(self) -> None:
        try:
            # Those queued first: their workers gather while the others' batches are applied here.
            members = sorted(self.members, key=lambda member: not member.queued)
            for batch in batches(self.subscription, self.max_batch_size):
                for member in members:
                    member.offer(batch)
        finally:
            for member in self.members:
                member.queue.put(_STOP)

    def _guard(self, target: Callable[[], None]) -> None:
        """Run a thread's work; its error stops the runner and is raised by run_forever."""
        try:
            target()
        except BaseException as error:
            if self._error is None:
                self._error = error
        finally:
            self.is_interrupted.set()

    def _stop_subscription_when_interrupted(self) -> None:
        self.is_interrupted.wait()
        self.subscription.stop()

    def stop(self) -> None:
        self.is_interrupted.set()

    def run_forever(self, timeout: float | None = None) -> None:
        """Block until ``timeout`` or until the runner stops; raise the error that stopped it."""
        if self.is_interrupted.wait(timeout=timeout) and self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> FanOutRunner:
        return self  # started by start(): a leader may fill tables first

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self.subscription.__exit__(exc_type, exc, tb)
        for thread in self._threads:
            thread.join()
        self._close()
        if self._error is not None and exc is None:
            error, self._error = self._error, None
            raise error

    def _close(self) -> None:
        self.app.close()
        for member in self.members:
            datastore = getattr(member.view, "datastore", None)
            if datastore is not None:
                datastore.close()
