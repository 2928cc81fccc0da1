"""A projection that paces its batches (the coupons projection does): a write that comes after a
quiet spell is projected at once, in a batch of its own; the writes that follow it closely wait
for the pace to pass and are then projected together, in one batch."""

from __future__ import annotations

import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

import pytest
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Tracking

from ledger.application import CouponLedger
from projections.coupons import CouponsProjection, CouponsView
from projections.fan_out import FanOutRunner, ProjectionSpec
from projections.leader import COUPONS_PROJECTION
from projections.runner import DEFAULT_MAX_BATCH_SIZE, LEADER_LOCK_KEY
from tests.support.commands import activate, create_coupon, deactivate
from tests.support.postgres import head, projection_listeners, tracking_position, wait_for

PACE = 1.0  # long beside a save (milliseconds), so that what the test sees is the pace's doing


class TimedProjection(CouponsProjection):
    """Notes every batch it is given: when it began, its first and last notification ids."""

    name = CouponsProjection.name
    batches: ClassVar[list[tuple[float, int, int]]] = []

    def process_events(self, batch: Sequence[tuple[DomainEventProtocol[Any], Tracking]]) -> None:
        type(self).batches.append((time.monotonic(), batch[0][1].notification_id, batch[-1][1].notification_id))
        super().process_events(batch)


def paced_runner(env: dict[str, str], pace: float) -> FanOutRunner:
    TimedProjection.batches = []
    spec = ProjectionSpec(TimedProjection, CouponsView, LEADER_LOCK_KEY, pace=pace)
    return FanOutRunner(specs=[spec], env=env, max_batch_size=DEFAULT_MAX_BATCH_SIZE)


def caught_up(url: str) -> None:
    wait_for(lambda: tracking_position(url) == head(url), 30, message="the projection at the log's head")


def test_a_write_after_a_quiet_spell_goes_at_once_and_those_close_behind_it_go_together(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    create_coupon(ledger, retailer_id, "PACED", "fixed", Decimal("5"))  # notification 1
    with paced_runner(env, PACE).start() as runner:
        caught_up(database_url)
        wait_for(lambda: projection_listeners(database_url) == 1, 15, message="the runner listening")
        first_started = TimedProjection.batches[0][0]
        time.sleep(max(0.0, first_started + PACE - time.monotonic()))  # a quiet spell of a whole pace

        saved = time.monotonic()
        deactivate(ledger, retailer_id, "PACED")  # notification 2: on its own, at once
        wait_for(lambda: len(TimedProjection.batches) == 2, 30, message="the second batch")
        for _ in range(3):  # notifications 3 to 8, each saved on its own, close behind it
            activate(ledger, retailer_id, "PACED")
            deactivate(ledger, retailer_id, "PACED")
        assert len(TimedProjection.batches) == 2  # held: the pace since the second batch has not passed
        caught_up(database_url)
        runner.run_forever(timeout=0)  # no error in any of its threads

    (_, *after_first), (second, *span_second), (third, *span_third) = TimedProjection.batches
    assert [after_first, span_second, span_third] == [[1, 1], [2, 2], [3, 8]]
    assert second - saved < PACE  # not held back: the batch before it started a pace ago
    assert third >= second + PACE  # the six that followed waited for the pace, then went as one


def test_the_coupons_projection_paces_its_batches_and_the_pace_is_at_most_a_second(env: dict[str, str]) -> None:
    assert 0 < COUPONS_PROJECTION.pace <= 1 and COUPONS_PROJECTION.linger == 0
    with pytest.raises(ValueError, match="pace"):
        paced_runner(env, 1.5)
