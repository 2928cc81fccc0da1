"""The coupons projection in batches: fewer transactions than events, never a wait for a batch to fill,
and the same rows as processing the events one by one."""

from __future__ import annotations

import importlib.metadata
import queue
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import ListenNotifySubscription, Tracking
from eventsourcing.projection import ApplicationSubscription, Projection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application import CouponLedger
from ledger.domain import Coupon, Redemption
from ledger.errors import CouponInactive
from projections.coupons import CouponsProjection, CouponsView, ProjectionLag, construct_view
from projections.fan_out import ProjectionSpec
from projections.leader import ProjectionLeader
from projections.runner import (
    DEFAULT_MAX_BATCH_SIZE,
    LEADER_LOCK_KEY,
    BatchingProjectionRunner,
    has_buffered_notifications,
)
from tests.support.commands import activate, create_coupon, deactivate
from tests.support.postgres import (
    head,
    projection_listeners,
    redeemed_events,
    tracking_position,
    uses_count,
    wait_for,
)

SUBTOTAL = Decimal("100.00")


class RecordingProjection(CouponsProjection):
    """Notes every batch it is given: (first notification id, last notification id, events)."""

    name = CouponsProjection.name  # the library names a projection's tables after its class otherwise
    batches: ClassVar[list[tuple[int, int, int]]] = []

    def process_events(self, batch: Sequence[tuple[DomainEventProtocol[Any], Tracking]]) -> None:
        type(self).batches.append((batch[0][1].notification_id, batch[-1][1].notification_id, len(batch)))
        super().process_events(batch)


def runner(
    env: dict[str, str],
    projection_class: type[CouponsProjection] = RecordingProjection,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    linger: float = 0.0,
) -> BatchingProjectionRunner[CouponLedger, CouponsView]:
    RecordingProjection.batches = []
    return BatchingProjectionRunner(
        application_class=CouponLedger,
        projection_class=projection_class,
        view_class=CouponsView,
        env=env,
        max_batch_size=max_batch_size,
        linger=linger,
    )


def listening(url: str) -> None:
    """Wait until the runner LISTENs for new events. The library's subscription reads what is stored
    once, then waits for a NOTIFY without a timeout: an event saved after that read but before its
    LISTEN took effect would wait for the next save, and the test for its projection would time out."""
    wait_for(lambda: projection_listeners(url) == 1, 15, message="the runner listening")


def project_in_batches(env: dict[str, str], url: str, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE) -> None:
    with runner(env, max_batch_size=max_batch_size) as batching:
        batching.wait(head(url), timeout=30)


def new_coupon(retailer_id: UUID, code: str, is_active: bool = True) -> Coupon:
    return Coupon(
        retailer_id=retailer_id,
        code=code,
        discount_type="fixed",
        discount_value=Decimal("5.00"),
        min_order_value=None,
        expires_at=None,
        max_uses=None,
        is_active=is_active,
    )


def redeem(coupon: Coupon) -> Redemption:
    """Redeem ``coupon`` (a pending Coupon.Redeemed) and return its Redemption (a pending Redemption.Recorded)."""
    redemption_id = uuid4()
    coupon.redeem(redemption_id, SUBTOTAL, datetime.now(UTC), None)
    return redemption_of(coupon, redemption_id)


def redemption_of(coupon: Coupon, redemption_id: UUID) -> Redemption:
    """A Redemption aggregate (its Redemption.Recorded event is one the coupons projection does not handle)."""
    return Redemption(
        id=redemption_id,
        retailer_id=coupon.retailer_id,
        coupon_id=coupon.id,
        code=coupon.code,
        idempotency_key=None,
        request_fingerprint="test",
        original_subtotal=SUBTOTAL,
        discount_amount=Decimal("5.00"),
        final_total=SUBTOTAL - Decimal("5.00"),
        free_shipping=False,
        order_id=None,
    )


def coupon_rows(url: str, retailer_id: UUID | None = None) -> dict[UUID, tuple[Any, ...]]:
    """Every column of the read model's rows (of one retailer), by coupon id."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id, retailer_id, code, discount_type, discount_value, min_order_value, expiry_date, max_uses,"
            " uses_count, is_active, created_at, version FROM coupons WHERE %s::uuid IS NULL OR retailer_id = %s",
            (retailer_id, retailer_id),
        ).fetchall()
    return {row[0]: row for row in rows}


def reset_read_model(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE coupons")
        conn.execute("DELETE FROM coupons_projection_tracking WHERE application_name = %s", (CouponLedger.name,))


def test_events_saved_in_one_transaction_are_projected_in_one_transaction_with_one_tracking_record(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    coupons = [new_coupon(retailer_id, f"MANY{i:02d}") for i in range(40)]
    with runner(env) as batching:
        listening(database_url)
        ledger.save(*coupons)
        created = head(database_url)
        batching.wait(created, timeout=30)

        redemptions = [redeem(coupon) for i, coupon in enumerate(coupons) for _ in range(i % 4 + 1)]
        ledger.save(*coupons, *redemptions)  # 100 Redeemed + 100 Recorded events
        redeemed = head(database_url)
        batching.wait(redeemed, timeout=30)

    assert RecordingProjection.batches == [(1, created, 40), (created + 1, redeemed, 200)]
    assert tracking_position(database_url) == redeemed
    for i, coupon in enumerate(coupons):
        assert uses_count(database_url, coupon.id) == redeemed_events(database_url, coupon.id) == i % 4 + 1


def test_a_batch_takes_what_is_already_buffered_but_never_more_than_max_batch_size(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    coupons = [new_coupon(retailer_id, f"CAPPED{i}") for i in range(10)]
    ledger.save(*coupons)
    redemptions = [redeem(coupon) for coupon in coupons for _ in range(15)]
    ledger.save(*coupons, *redemptions)  # 10 + 300 events, all written before the runner starts

    project_in_batches(env, database_url, max_batch_size=64)

    assert [size for _, _, size in RecordingProjection.batches] == [64, 64, 64, 64, 54]
    assert tracking_position(database_url) == head(database_url) == 310
    for coupon in coupons:
        assert uses_count(database_url, coupon.id) == 15


def test_a_lone_event_is_projected_at_once_without_waiting_for_a_batch_to_fill(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    coupon = create_coupon(ledger, retailer_id, "LONE", "fixed", Decimal("5"))
    with runner(env) as batching:
        batching.wait(head(database_url), timeout=30)
        listening(database_url)
        deactivate(ledger, retailer_id, "LONE")
        batching.wait(head(database_url), timeout=30)  # a runner waiting for a fuller batch never gets here

    assert RecordingProjection.batches == [(1, 1, 1), (2, 2, 1)]
    assert coupon_rows(database_url)[coupon.id][9] is False  # is_active


def test_a_lingering_runner_takes_the_events_saved_soon_after_the_first_into_its_batch(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    create_coupon(ledger, retailer_id, "LINGER", "fixed", Decimal("5"))
    with runner(env, linger=1.0) as batching:
        batching.wait(head(database_url), timeout=30)
        listening(database_url)
        for _ in range(3):  # three saves, each its own transaction, well within the second
            deactivate(ledger, retailer_id, "LINGER")
            activate(ledger, retailer_id, "LINGER")
        batching.wait(head(database_url), timeout=30)

    assert RecordingProjection.batches == [(1, 1, 1), (2, 7, 6)]


def test_linger_is_at_most_a_second(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="linger"):
        runner(env, linger=1.5)


def test_a_coupon_created_redeemed_deactivated_and_activated_in_one_batch_gets_the_row_of_one_by_one_processing(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    existing = new_coupon(retailer_id, "EXISTING")
    ledger.save(existing)
    project_in_batches(env, database_url)
    before = head(database_url)

    # One batch: four transactions, each coupon's events interleaved with the others'.
    r1 = redeem(existing)
    existing.deactivate()
    existing.activate()
    r2 = redeem(existing)
    existing.deactivate()
    ledger.save(existing, r1, r2)
    fresh = new_coupon(retailer_id, "FRESH")
    fresh_redemptions = [redeem(fresh) for _ in range(3)]
    fresh.deactivate()
    fresh.activate()
    ledger.save(fresh, *fresh_redemptions)
    dormant = new_coupon(retailer_id, "DORMANT", is_active=False)
    dormant.activate()
    dormant_redemption = redeem(dormant)
    dormant.deactivate()
    ledger.save(dormant, dormant_redemption)
    existing.activate()
    late = redeem(fresh)
    ledger.save(existing, fresh, late)

    project_in_batches(env, database_url)
    assert RecordingProjection.batches == [(before + 1, head(database_url), head(database_url) - before)]
    batched = coupon_rows(database_url)
    expected = {  # uses_count, is_active, version
        existing.id: (2, True, existing.version),
        fresh.id: (4, True, fresh.version),
        dormant.id: (1, False, dormant.version),
    }
    assert {coupon_id: (row[8], row[9], row[11]) for coupon_id, row in batched.items()} == expected

    reset_read_model(database_url)
    project_in_batches(env, database_url, max_batch_size=1)
    assert len(RecordingProjection.batches) == head(database_url)  # one transaction per event
    assert coupon_rows(database_url) == batched


def replay_one_by_one(events: Sequence[DomainEventProtocol[Any]]) -> dict[UUID, tuple[str, int, bool, int]]:
    """The rows of processing each event on its own, in order: (code, uses_count, is_active, version)."""
    rows: dict[UUID, tuple[str, int, bool, int]] = {}
    for event in events:
        if isinstance(event, Coupon.Created):
            rows[event.originator_id] = (event.code, 0, event.is_active, event.originator_version)
        elif event.originator_id in rows:
            code, uses, active, _ = rows[event.originator_id]
            if isinstance(event, Coupon.Redeemed):
                rows[event.originator_id] = (code, uses + 1, active, event.originator_version)
            elif isinstance(event, Coupon.Activated | Coupon.Deactivated):
                rows[event.originator_id] = (code, uses, isinstance(event, Coupon.Activated), event.originator_version)
    return rows


OPERATIONS = st.lists(
    st.tuples(
        st.integers(0, 2),  # which coupon (the first operation on a coupon also creates it)
        st.sampled_from(["redeem", "deactivate", "activate", "record"]),
        st.booleans(),  # save (commit) after this operation
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS, max_batch_size=st.integers(1, 30))
def test_any_events_cut_into_any_batches_give_the_rows_of_one_by_one_processing(
    database_url: str,
    env: dict[str, str],
    ledger: CouponLedger,
    operations: list[tuple[int, str, bool]],
    max_batch_size: int,
) -> None:
    retailer_id = uuid4()  # every example has coupons of its own in the shared database
    start = head(database_url)
    coupons: dict[int, Coupon] = {}
    pending: list[Coupon | Redemption] = []
    for index, operation, commit in operations:
        if index not in coupons:
            coupons[index] = new_coupon(retailer_id, f"PROP{index}", is_active=index != 2)
        coupon = coupons[index]
        if operation == "redeem":
            with suppress(CouponInactive):  # the domain refuses: no event
                pending.append(redeem(coupon))
        elif operation == "deactivate":
            coupon.deactivate()
        elif operation == "activate":
            coupon.activate()
        else:  # an event the projection does not handle
            pending.append(redemption_of(coupon, uuid4()))
        if not any(item is coupon for item in pending):
            pending.append(coupon)
        if commit:
            ledger.save(*pending)
            pending.clear()
    ledger.save(*pending)

    project_in_batches(env, database_url, max_batch_size=max_batch_size)

    notifications = ledger.recorder.select_notifications(start + 1, 10_000)
    expected = replay_one_by_one([ledger.mapper.to_domain_event(n) for n in notifications])
    actual = {
        coupon_id: (row[2], row[8], row[9], row[11])
        for coupon_id, row in coupon_rows(database_url, retailer_id).items()
    }
    assert actual == expected
    assert tracking_position(database_url) == head(database_url)


def test_the_batching_runner_can_still_see_what_the_library_subscription_has_buffered(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    """has_buffered_notifications reads private state of eventsourcing 9.5.6: this fails if that changes."""
    assert importlib.metadata.version("eventsourcing") == "9.5.6", "re-check has_buffered_notifications"
    coupon = new_coupon(retailer_id, "BUFFERED")
    ledger.save(coupon, redeem(coupon), redeem(coupon))  # 5 events
    app = CouponLedger(env=env)
    try:
        with ApplicationSubscription(app=app, gt=0) as subscription:
            inner = subscription.subscription
            assert isinstance(inner, ListenNotifySubscription)
            assert isinstance(inner._notifications, Sequence)
            assert isinstance(inner._notifications_index, int)
            assert isinstance(inner._notifications_queue, queue.Queue)

            wait_for(lambda: has_buffered_notifications(subscription), 30, interval=0.01, message="the first page")
            assert [next(subscription)[1].notification_id for _ in range(5)] == [1, 2, 3, 4, 5]
            assert not has_buffered_notifications(subscription)

            ledger.save(coupon, redeem(coupon))  # 2 more
            wait_for(lambda: has_buffered_notifications(subscription), 30, interval=0.01, message="the new page")
            assert next(subscription)[1].notification_id == 6
            assert has_buffered_notifications(subscription)
            assert next(subscription)[1].notification_id == 7
            assert not has_buffered_notifications(subscription)
    finally:
        app.close()


def test_read_lag_gives_the_head_of_the_log_and_the_tracking_position_together(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    view = construct_view(env)
    try:
        assert view.read_lag(ledger.name) == ProjectionLag(0, 0)
        coupon = new_coupon(retailer_id, "LAGGING")
        ledger.save(coupon, redeem(coupon), redeem(coupon))
        lag = view.read_lag(ledger.name)
        assert lag == ProjectionLag(head_notification_id=5, tracking_notification_id=0)
        assert lag.behind == 5

        project_in_batches(env, database_url)
        assert view.read_lag(ledger.name) == (5, 5)
        assert view.read_lag(ledger.name).behind == 0
    finally:
        view.datastore.close()


def test_the_projection_leader_runs_the_projection_in_batches(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    RecordingProjection.batches = []
    coupons = [new_coupon(retailer_id, f"LED{i}") for i in range(20)]
    ledger.save(*coupons, *[redeem(coupon) for coupon in coupons])  # 60 events
    recording = ProjectionSpec(RecordingProjection, CouponsView, LEADER_LOCK_KEY)
    leader = ProjectionLeader(database_url, env, poll_interval=0.2, projections=(recording,)).start()
    try:
        wait_for(lambda: tracking_position(database_url) == 60, 30, message="the leader to project")
    finally:
        leader.stop()
    assert RecordingProjection.batches == [(1, 60, 60)]
    assert all(uses_count(database_url, coupon.id) == 1 for coupon in coupons)


class PerEventProjection(Projection[CouponsView]):
    name = CouponsProjection.name

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        pass


def test_the_batching_runner_refuses_a_projection_without_process_events_and_an_empty_batch_size(
    env: dict[str, str],
) -> None:
    with pytest.raises(TypeError, match="process_events"):
        BatchingProjectionRunner(
            application_class=CouponLedger, projection_class=PerEventProjection, view_class=CouponsView, env=env
        )
    with pytest.raises(ValueError, match="max_batch_size"):
        runner(env, max_batch_size=0)
