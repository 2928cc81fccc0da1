"""The `coupons` read model: one row per coupon with its use count, for lists and analytics; and
the `reservations` read model beside it: one row per hold of a coupon use, for the
coupons list's status (live holds count against max_uses) and for the sweeper.

Events are projected in batches. A batch's row changes are coalesced (`CouponChanges`: one
INSERT of every coupon created in the batch, with whatever else the batch did to it, one
UPDATE for every other coupon the batch touched; likewise one INSERT of every hold and one
UPDATE of every hold ended in the batch) and written in ONE transaction together
with ONE tracking record, that of the batch's last event. The result equals processing the
events one by one in notification order; a runner that stops anywhere, or crashes mid-batch,
leaves either the whole batch or nothing of it, and resumes without skipping or double counting.

Each batch first claims its place in the log: under a transaction-scoped advisory lock it
checks that the tracking record is still before the batch's first event, so a rival runner
whose batches have other boundaries can never apply an event twice (see `CouponsView.claim`).

The rows are in coupon_rows.py, their coalescing in coupon_changes.py, the SQL in coupons_view.py;
this module is the projection itself, and it exports what its readers import from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import DataError, InfrastructureFactory, IntegrityError, Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import Environment, EnvType, get_topic

from projections.coupon_changes import CouponChanges, UnstorableValue
from projections.coupon_rows import (
    CONFIRMED,
    EXPIRED,
    HELD,
    RELEASED,
    RESERVATION_COLUMNS,
    CouponRow,
    CouponUpdate,
    ProjectionLag,
    ReservationRow,
)
from projections.coupons_view import STATUS_SQL, CouponsView

__all__ = [
    "CONFIRMED",
    "EXPIRED",
    "HELD",
    "RELEASED",
    "RESERVATION_COLUMNS",
    "STATUS_SQL",
    "CouponChanges",
    "CouponRow",
    "CouponUpdate",
    "CouponsProjection",
    "CouponsView",
    "ProjectionLag",
    "ReservationRow",
    "UnwritableEvent",
    "cannot_write",
    "construct_view",
]


class UnwritableEvent(Exception):
    """An event the read model cannot hold (a value its columns refuse). Projecting stops at it:
    every later event would be projected on a read model that misses it."""

    def __init__(self, event: DomainEventProtocol[Any], cause: Exception) -> None:
        self.originator_id = event.originator_id
        self.originator_version = event.originator_version
        self.topic = get_topic(type(event))
        super().__init__(
            f"coupons projection cannot write event originator_id={self.originator_id}"
            f" originator_version={self.originator_version} topic={self.topic}: {cause}"
        )


def cannot_write(error: Exception) -> bool:
    """Whether the database refused the rows themselves (a value out of range, a NUL, a violated
    constraint), as opposed to a rival runner's claim or a lost connection, which retrying fixes."""
    if isinstance(error, (DataError, UnstorableValue)):
        return True
    return isinstance(error, IntegrityError) and isinstance(error.__cause__, psycopg.IntegrityError)


class CouponsProjection(Projection[CouponsView]):
    """Projects coupon events into the `coupons` table, a batch per transaction.

    `process_events` is what the batching runner (projections.runner) calls; the library's
    per-event `process_event` remains for the library's own ProjectionRunner and is the same
    code with a batch of one event.
    """

    name = "coupons_projection"

    def process_events(self, batch: Sequence[tuple[DomainEventProtocol[Any], Tracking]]) -> None:
        """Apply a batch of consecutive events of the log (in notification order) in one
        transaction with one tracking record, that of the last event. Events this projection
        does not handle change no row but still advance the tracking record."""
        if not batch:
            return
        try:
            changes = CouponChanges.of(event for event, _ in batch)
            self.view.record_batch(changes, first_notification_id=batch[0][1].notification_id, tracking=batch[-1][1])
        except Exception as error:
            if not cannot_write(error):
                raise
            if len(batch) == 1:
                raise UnwritableEvent(batch[0][0], error) from error
            # Find the event: the batch wrote nothing, so write its events one by one up to it.
            for item in batch:
                self.process_events([item])

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.process_events([(domain_event, tracking)])


def construct_view(env: EnvType) -> CouponsView:
    """A view for readers, configured exactly as the runner configures its own."""
    factory = InfrastructureFactory[CouponsView].construct(env=Environment(CouponsProjection.name, dict(env)))
    return factory.tracking_recorder(CouponsView)
