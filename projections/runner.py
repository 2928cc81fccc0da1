"""Runs the projections: in batches, and in exactly one process per database.

`BatchingProjectionRunner` is the library's ProjectionRunner (same subscription, same
threads, same `wait`/`run_forever`/context manager) with another processing loop: it takes
the next event (waiting only if none is there), adds whatever the subscription has already
buffered, up to ``max_batch_size`` events, and hands the whole batch to the projection's
`process_events`, which applies it in one transaction with one tracking record. Unless told to
linger, it never waits for a batch to fill: at light load a batch is one event, as before. Told
to linger, it waits a moment after a batch's first event for more, so a busy ledger makes few
large transactions instead of many small ones (the leader's outbox does the same on its own
thread: projections/fan_out.py `Member.work`).

The leader (projections/leader.py) runs the projections from one shared subscription
(projections/fan_out.py), with the same batches; this runner runs one projection alone (tests,
tools). Even if two ever ran at once, each batch checks in its own transaction that none of its
events was processed yet, so the second writer's transaction fails rather than counts twice.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Iterator, Sequence
from threading import Event
from traceback import format_exc
from typing import Any, Protocol, TypeVar, runtime_checkable
from warnings import warn

from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import ListenNotifySubscription, Tracking, TrackingRecorder
from eventsourcing.projection import (
    ApplicationSubscription,
    EventSourcedProjection,
    Projection,
    ProjectionRunner,
)
from eventsourcing.utils import EnvType

from ledger.metrics import metrics

log = logging.getLogger(__name__)
LEADER_LOCK_KEY = 0x636F75706F6E  # "coupon"
DEFAULT_MAX_BATCH_SIZE = 500  # the library's subscription reads pages of 500 notifications

TApplication = TypeVar("TApplication")
TView = TypeVar("TView", bound=TrackingRecorder)
Batch = list[tuple[DomainEventProtocol[Any], Tracking]]


@runtime_checkable
class ProcessesBatches(Protocol):
    """A projection that applies a run of consecutive events in one transaction."""

    def process_events(self, batch: Sequence[tuple[DomainEventProtocol[Any], Tracking]]) -> None: ...


def has_buffered_notifications(subscription: ApplicationSubscription[Any]) -> bool:
    """Whether the subscription can yield another event without waiting for the database.

    Relies on private state of eventsourcing 9.5.6 (pinned in pyproject.toml), the one place
    that does: ListenNotifySubscription.__next__ returns the rest of its current page
    (``_notifications`` from ``_notifications_index``), then takes the next page its pull
    thread put on ``_notifications_queue``. Only the runner's processing thread consumes, so
    when this says True, the next ``next(subscription)`` does not block.
    tests/integration/test_projection_batches.py fails if the library changes this.
    """
    inner = subscription.subscription
    if not isinstance(inner, ListenNotifySubscription):
        return False  # some other subscription: batches of one event, still correct
    return inner._notifications_index < len(inner._notifications) or not inner._notifications_queue.empty()


LINGER_STEP = 0.005  # seconds between looks at the buffer while a batch lingers


def batches(subscription: ApplicationSubscription[Any], max_batch_size: int, linger: float = 0.0) -> Iterator[Batch]:
    """Consecutive batches of the subscription's events: each starts with the next event
    (waiting for it if need be) and takes what is already buffered, up to ``max_batch_size``;
    with ``linger``, also what arrives within that many seconds of its first event."""
    for first in subscription:
        batch = [first]
        deadline = time.monotonic() + linger
        while len(batch) < max_batch_size:
            if not has_buffered_notifications(subscription):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                time.sleep(min(remaining, LINGER_STEP))
                continue
            try:
                batch.append(next(subscription))
            except StopIteration:  # stopped: nothing of this batch was written, the next runner redoes it
                return
        yield batch


class BatchingProjectionRunner(ProjectionRunner[TApplication, TView]):
    """The library's ProjectionRunner, processing events in batches of up to ``max_batch_size``.

    ``projection_class`` must have ``process_events`` (see ProcessesBatches).
    """

    def __init__(
        self,
        *,
        application_class: type[TApplication],
        projection_class: type[Projection[TView]],
        view_class: type[TView],
        env: EnvType | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        linger: float = 0.0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if not 0 <= linger <= 1:
            raise ValueError(f"linger must be between 0 and 1 second, got {linger}")
        if not issubclass(projection_class, ProcessesBatches):
            raise TypeError(f"{projection_class.__name__} has no process_events(batch)")
        self.max_batch_size = max_batch_size  # before super().__init__, which starts the loop
        self.linger = linger
        super().__init__(
            application_class=application_class, projection_class=projection_class, view_class=view_class, env=env
        )

    @staticmethod
    def _process_events_loop(
        subscription: ApplicationSubscription[Any],
        projection: EventSourcedProjection[Any] | Projection[Any],
        is_stopping: Event,
        runner: weakref.ReferenceType[ProjectionRunner[Application[Any], TrackingRecorder]],
    ) -> None:
        """Like the library's loop (same error hand-over to the runner), a batch at a time."""
        try:
            owner = runner()
            max_batch_size, linger = (
                (owner.max_batch_size, owner.linger) if isinstance(owner, BatchingProjectionRunner) else (1, 0.0)
            )
            del owner  # hold the runner only weakly, as the library does
            assert isinstance(projection, ProcessesBatches)
            for batch in batches(subscription, max_batch_size, linger):
                started = time.perf_counter()
                projection.process_events(batch)
                if (m := metrics()) is not None:
                    m.projection_batch_seconds.observe(time.perf_counter() - started)
                    m.projected_events.inc(len(batch))
        except BaseException as error:
            _runner = runner()
            if _runner is not None:
                _runner._thread_error = error
            else:
                warn(
                    "ProjectionRunner was deleted before error could be assigned:\n" + format_exc(),
                    RuntimeWarning,
                    stacklevel=2,
                )
        finally:
            is_stopping.set()
