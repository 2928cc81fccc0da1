"""The coupons projection on PostgreSQL: exactly once across restarts, crashes, rival runners and leaders."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import suppress
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

import psycopg
import pytest
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError, Tracking
from psycopg.rows import DictRow

from ledger.application import CouponLedger
from projections.coupons import CouponChanges, CouponsProjection, CouponsView, CouponUpdate, construct_view
from projections.leader import ProjectionLeader
from projections.runner import DEFAULT_MAX_BATCH_SIZE, BatchingProjectionRunner
from projections.verify import verify
from tests.support.commands import apply, create_coupon
from tests.support.postgres import (
    StartLine,
    head,
    leader_lock_holders,
    notification_id_of,
    project_to_head,
    projection_listeners,
    redeemed_events,
    run_cli,
    tracking_position,
    uses_count,
    wait_for,
)

SUBTOTAL = Decimal("100.00")


def redeem(ledger: CouponLedger, retailer_id: UUID, code: str, times: int) -> None:
    for _ in range(times):
        apply(ledger, retailer_id, code, SUBTOTAL)


def runner(
    env: dict[str, str],
    view_class: type[CouponsView] = CouponsView,
    projection_class: type[CouponsProjection] = CouponsProjection,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
) -> BatchingProjectionRunner[CouponLedger, CouponsView]:
    """The runner the projection leader runs."""
    return BatchingProjectionRunner(
        application_class=CouponLedger,
        projection_class=projection_class,
        view_class=view_class,
        env=env,
        max_batch_size=max_batch_size,
    )


def assert_read_model_matches_log_through_its_tracking_position(url: str, coupon_id: UUID) -> int:
    position = tracking_position(url)
    assert uses_count(url, coupon_id) == redeemed_events(url, coupon_id, through=position)
    return position


class StoppingProjection(CouponsProjection):
    """Processes nothing after notification ``last``: the runner stops exactly there, mid-batch."""

    name = CouponsProjection.name  # the library names a projection's tables after its class otherwise
    last = 0
    went_past = threading.Event()

    def process_events(self, batch: Sequence[tuple[DomainEventProtocol[Any], Tracking]]) -> None:
        kept = [(event, tracking) for event, tracking in batch if tracking.notification_id <= self.last]
        if len(kept) < len(batch):
            self.went_past.set()
        super().process_events(kept)


def test_a_runner_stopped_mid_stream_resumes_without_skipping_or_double_counting(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    coupon = create_coupon(ledger, retailer_id, "RESTART", "percentage", Decimal("10"))
    redeem(ledger, retailer_id, "RESTART", 20)
    middle = notification_id_of(database_url, coupon.id, version=11)  # the 10th Redeemed
    StoppingProjection.last, StoppingProjection.went_past = middle, threading.Event()

    with runner(env, projection_class=StoppingProjection) as first:
        first.wait(middle, timeout=30)
        assert StoppingProjection.went_past.wait(30)
    assert tracking_position(database_url) == middle
    assert uses_count(database_url, coupon.id) == 10

    redeem(ledger, retailer_id, "RESTART", 20)
    target = head(database_url)
    with runner(env) as second:
        second.wait(target, timeout=30)

    assert tracking_position(database_url) == target
    assert redeemed_events(database_url, coupon.id) == 40
    assert uses_count(database_url, coupon.id) == 40


class Crash(Exception):
    pass


class CrashingView(CouponsView):
    """Dies inside the batch's transaction, after its INSERT and its UPDATE ran, before the tracking
    record and the commit; first notes what the transaction itself sees."""

    seen_in_transaction: ClassVar[dict[UUID, int]] = {}

    def update_coupons(self, curs: psycopg.Cursor[DictRow], updates: Sequence[CouponUpdate]) -> None:
        super().update_coupons(curs, updates)
        rows = curs.execute("SELECT id, uses_count FROM coupons").fetchall()
        type(self).seen_in_transaction = {row["id"]: row["uses_count"] for row in rows}
        raise Crash(f"crashed after updating {len(updates)} coupons")


def test_a_runner_that_crashes_mid_batch_leaves_no_row_change_and_no_tracking_record_and_restarts_exactly(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    first = create_coupon(ledger, retailer_id, "CRASH-A", "fixed", Decimal("5"))
    second = create_coupon(ledger, retailer_id, "CRASH-B", "fixed", Decimal("5"))
    before = project_to_head(env, database_url)
    redeem(ledger, retailer_id, "CRASH-A", 4)
    third = create_coupon(ledger, retailer_id, "CRASH-C", "fixed", Decimal("5"))
    redeem(ledger, retailer_id, "CRASH-B", 3)
    redeem(ledger, retailer_id, "CRASH-C", 2)
    CrashingView.seen_in_transaction = {}

    with runner(env, CrashingView) as crashing, pytest.raises(Crash):
        crashing.wait(head(database_url), timeout=30)

    # Inside the transaction the whole batch had been applied ...
    assert CrashingView.seen_in_transaction == {first.id: 4, second.id: 3, third.id: 2}
    # ... and the crash rolled all of it back: no row change, no new row, no tracking record.
    assert (uses_count(database_url, first.id), uses_count(database_url, second.id)) == (0, 0)
    assert uses_count(database_url, third.id) is None
    assert tracking_position(database_url) == before

    with runner(env) as restarted:
        restarted.wait(head(database_url), timeout=30)
    assert tracking_position(database_url) == head(database_url)
    for coupon, times in ((first, 4), (second, 3), (third, 2)):
        assert uses_count(database_url, coupon.id) == redeemed_events(database_url, coupon.id) == times


class RacingView(CouponsView):
    """Holds each runner at its first batch until the rival runner reaches the same batch."""

    start_line = StartLine(2, timeout=10)

    def record_batch(self, changes: CouponChanges, first_notification_id: int, tracking: Tracking) -> None:
        self.start_line()
        super().record_batch(changes, first_notification_id, tracking)


def test_two_runners_on_one_database_never_count_an_event_twice(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    coupon = create_coupon(ledger, retailer_id, "RIVALS", "fixed", Decimal("5"))
    project_to_head(env, database_url)  # both rivals start at the same first Redeemed event
    redeem(ledger, retailer_id, "RIVALS", 10)
    target = head(database_url)
    RacingView.start_line = StartLine(2, timeout=10)

    rivals = [runner(env, RacingView), runner(env, RacingView)]
    reached_head = []
    try:
        for rival in rivals:
            rival.__enter__()
        for rival in rivals:
            with suppress(Exception):
                rival.wait(target, timeout=30)
                reached_head.append(rival)
    finally:
        for rival in rivals:
            with suppress(Exception):
                rival.__exit__(None, None, None)

    assert not RacingView.start_line.barrier.broken, "the two runners never processed the same batch together"
    assert reached_head, "neither runner reached the head"
    assert tracking_position(database_url) == target
    assert uses_count(database_url, coupon.id) == redeemed_events(database_url, coupon.id) == 10


class Race:
    """The steps of a race between two rivals that start at the same position."""

    def __init__(self) -> None:
        self.may_commit = threading.Event()  # both rivals have read their start position
        self.first_committed = threading.Event()  # the first rival committed its first batch
        self.second_tried = threading.Event()  # the second rival tried to write its first batch
        self.first_tried_again = threading.Event()  # then the first rival tried its second batch


class FirstRivalView(CouponsView):
    """Commits its first batch once both rivals started; tries its second after the other rival tried."""

    race = Race()
    batches = 0

    def record_batch(self, changes: CouponChanges, first_notification_id: int, tracking: Tracking) -> None:
        type(self).batches += 1
        if self.batches == 1:
            assert self.race.may_commit.wait(30)
        elif self.batches == 2:
            assert self.race.second_tried.wait(30)
        try:
            super().record_batch(changes, first_notification_id, tracking)
        finally:
            (self.race.first_committed if self.batches == 1 else self.race.first_tried_again).set()


class SecondRivalView(CouponsView):
    """Writes its first batch only after the first rival committed a shorter one over the same events."""

    def record_batch(self, changes: CouponChanges, first_notification_id: int, tracking: Tracking) -> None:
        assert FirstRivalView.race.first_committed.wait(30)
        try:
            super().record_batch(changes, first_notification_id, tracking)
        finally:
            FirstRivalView.race.second_tried.set()


class UnguardedSecondRivalView(SecondRivalView):
    """The second rival without the batch's claim: only the library's tracking check is left."""

    def claim(self, curs: psycopg.Cursor[DictRow], application_name: str, first_notification_id: int) -> None:
        pass


def race_rivals_with_different_batches(
    env: dict[str, str], url: str, second_view: type[CouponsView]
) -> tuple[BaseException | None, BaseException | None]:
    """Two runners start at the same position; the first cuts the log into batches of 3, the
    second takes everything at once and writes it after the first committed its first batch;
    then the first tries its second batch. Returns the errors each runner ended with."""
    target = head(url)
    FirstRivalView.race, FirstRivalView.batches = Race(), 0
    rivals = [runner(env, FirstRivalView, max_batch_size=3), runner(env, second_view)]
    FirstRivalView.race.may_commit.set()
    errors: list[BaseException | None] = [None, None]
    for i, rival in enumerate(rivals):
        try:
            rival.__enter__()
            if i == 0:
                assert FirstRivalView.race.first_tried_again.wait(30)
                rival.wait(target, timeout=30)
        except Exception as error:
            errors[i] = error
    for i, rival in enumerate(rivals):
        try:
            rival.__exit__(None, None, None)  # re-raises the error its processing thread ended with
        except Exception as error:
            errors[i] = errors[i] or error
    return errors[0], errors[1]


def test_two_runners_cutting_the_log_into_different_batches_never_count_an_event_twice(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    coupon = create_coupon(ledger, retailer_id, "BOUNDARIES", "fixed", Decimal("5"))
    project_to_head(env, database_url)
    redeem(ledger, retailer_id, "BOUNDARIES", 10)

    first_error, second_error = race_rivals_with_different_batches(env, database_url, SecondRivalView)

    assert first_error is None
    assert isinstance(second_error, IntegrityError), second_error
    assert tracking_position(database_url) == head(database_url)
    assert uses_count(database_url, coupon.id) == redeemed_events(database_url, coupon.id) == 10


def test_without_the_batch_claim_the_library_tracking_check_alone_would_count_events_twice(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    """Why CouponsView.claim exists: the race above, with the claim switched off in the second rival."""
    coupon = create_coupon(ledger, retailer_id, "UNGUARDED", "fixed", Decimal("5"))
    project_to_head(env, database_url)
    redeem(ledger, retailer_id, "UNGUARDED", 10)

    first_error, second_error = race_rivals_with_different_batches(env, database_url, UnguardedSecondRivalView)

    assert second_error is None
    assert isinstance(first_error, IntegrityError), first_error  # its second batch: tracking is past it
    counted = uses_count(database_url, coupon.id)
    assert counted is not None and counted > redeemed_events(database_url, coupon.id) == 10


def test_of_two_projection_leaders_exactly_one_leads_and_the_other_takes_over_when_it_stops(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    coupon = create_coupon(ledger, retailer_id, "LEADER", "fixed", Decimal("5"))
    leaders = [ProjectionLeader(database_url, env, poll_interval=0.2) for _ in range(2)]
    try:
        for leader in leaders:
            leader.start()
        wait_for(lambda: any(leader.is_leader.is_set() for leader in leaders), 15, message="a leader")
        time.sleep(1.0)  # several polls: the follower has certainly tried the lock by now
        assert sum(leader.is_leader.is_set() for leader in leaders) == 1
        assert len(leader_lock_holders(database_url)) == 1
        wait_for(lambda: projection_listeners(database_url) == 1, 15, message="one runner")
        first, second = sorted(leaders, key=lambda leader: not leader.is_leader.is_set())

        redeem(ledger, retailer_id, "LEADER", 3)
        wait_for(lambda: uses_count(database_url, coupon.id) == 3, 15, message="the first leader to project")

        first.stop()
        assert not first.is_leader.is_set()
        assert second.is_leader.wait(15), "the follower did not take over"
        wait_for(lambda: projection_listeners(database_url) == 1, 15, message="one runner after the takeover")

        redeem(ledger, retailer_id, "LEADER", 2)
        wait_for(lambda: uses_count(database_url, coupon.id) == 5, 15, message="the second leader to project")
        assert tracking_position(database_url) == head(database_url)
    finally:
        for leader in leaders:
            leader.stop()
    assert not any(leader.is_leader.is_set() for leader in leaders)
    assert not leader_lock_holders(database_url)


def test_a_leading_projection_leader_stops_at_once_not_after_its_poll_interval(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    coupon = create_coupon(ledger, retailer_id, "PROMPT", "fixed", Decimal("5"))
    leader = ProjectionLeader(database_url, env, poll_interval=5.0).start()
    try:
        assert leader.is_leader.wait(15), "it did not lead"
        redeem(ledger, retailer_id, "PROMPT", 1)
        wait_for(lambda: uses_count(database_url, coupon.id) == 1, 15, message="the leader to project")
        started = time.monotonic()
        leader.stop()
        stopped_in = time.monotonic() - started
    finally:
        leader.stop()
    assert stopped_in < 2.0, f"stop took {stopped_in:.2f} s: it waited out the 5 s poll interval"
    assert not leader.is_leader.is_set()
    assert not leader_lock_holders(database_url)


@pytest.fixture
def view(env: dict[str, str]) -> Iterator[CouponsView]:
    view = construct_view(env)
    yield view
    view.datastore.close()


def test_verify_finds_nothing_wrong_with_a_consistent_ledger_and_names_a_tampered_coupon(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    coupon = create_coupon(ledger, retailer_id, "AUDITED", "percentage", Decimal("15"), max_uses=10)
    other = create_coupon(ledger, retailer_id, "UNTOUCHED", "fixed", Decimal("5"))
    redeem(ledger, retailer_id, "AUDITED", 4)
    redeem(ledger, retailer_id, "UNTOUCHED", 2)
    project_to_head(env, database_url)

    report = verify(ledger, view)
    assert report.violations == []
    assert (report.coupons, report.redemptions) == (2, 6)
    assert report.projected_through == report.head == head(database_url)
    clean = run_cli(database_url, "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "VIOLATION" not in clean.stdout

    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE coupons SET uses_count = uses_count + 1 WHERE id = %s", (coupon.id,))

    violations = verify(ledger, view).violations
    assert len(violations) == 1
    assert "AUDITED" in violations[0] and str(coupon.id) in violations[0]
    assert "UNTOUCHED" not in violations[0] and str(other.id) not in violations[0]
    tampered = run_cli(database_url, "verify")
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    lines = [line for line in tampered.stdout.splitlines() if line.startswith("VIOLATION:")]
    assert len(lines) == 1 and "AUDITED" in lines[0]


def test_verify_knows_checkout_redemptions_by_their_order_rows_not_by_their_keys(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    create_coupon(ledger, retailer_id, "CARTED", "fixed", Decimal("5"))
    kept = apply(ledger, retailer_id, "CARTED", Decimal("50.00"), "order:900001", order_id="900001")
    keyed = apply(ledger, retailer_id, "CARTED", Decimal("50.00"), "order:900002", order_id="900002")
    apply(ledger, retailer_id, "CARTED", Decimal("50.00"), "client-key", order_id="client-order-7")
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO retailers (id, name) VALUES (%s, 'carted')", (retailer_id,))
        for order_id in (900001, 900003):
            conn.execute(
                "INSERT INTO orders (id, retailer_id, user_id, subtotal, total) VALUES (%s, %s, 1, 50, 45)",
                (order_id, retailer_id),
            )
        conn.execute(
            "INSERT INTO order_coupons (order_id, retailer_id, coupon_code, redemption_id, discount_amount)"
            " VALUES (900001, %s, 'CARTED', %s, 5)",
            (retailer_id, kept.redemption_id),
        )
    project_to_head(env, database_url)
    assert verify(ledger, view).violations == []  # an apply keyed order:<n> without an order is a client's

    with psycopg.connect(database_url) as conn:  # an order claiming a redemption made for another order
        conn.execute(
            "INSERT INTO order_coupons (order_id, retailer_id, coupon_code, redemption_id, discount_amount)"
            " VALUES (900003, %s, 'CARTED', %s, 5)",
            (retailer_id, keyed.redemption_id),
        )
    violations = verify(ledger, view).violations
    assert len(violations) == 1, violations
    assert str(keyed.redemption_id) in violations[0] and "order_id 900003 != 900002" in violations[0]


def test_verify_names_every_coupon_whose_read_model_count_disagrees_with_the_log(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    codes = ["FIRST", "SECOND"]
    for code in codes:
        create_coupon(ledger, retailer_id, code, "fixed", Decimal("5"))
        redeem(ledger, retailer_id, code, 1)
    project_to_head(env, database_url)

    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE coupons SET uses_count = uses_count + 1")

    violations = verify(ledger, view).violations
    assert sorted(code for code in codes for v in violations if code in v) == sorted(codes)


def test_a_new_runner_processes_only_the_events_after_the_tracking_position(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    coupon = create_coupon(ledger, retailer_id, "RESUME", "fixed", Decimal("5"))
    redeem(ledger, retailer_id, "RESUME", 5)
    project_to_head(env, database_url)
    position = tracking_position(database_url)

    redeem(ledger, retailer_id, "RESUME", 5)
    first_ids: list[int] = []
    redeemed: list[int] = []
    lock = threading.Lock()

    class RecordingView(CouponsView):
        def record_batch(self, changes: CouponChanges, first_notification_id: int, tracking: Tracking) -> None:
            with lock:
                first_ids.append(first_notification_id)
                redeemed.extend(update.redeemed for update in changes.updated.values())
            super().record_batch(changes, first_notification_id, tracking)

    with runner(env, RecordingView) as resumed:
        resumed.wait(head(database_url), timeout=30)
    assert first_ids and min(first_ids) > position
    assert sum(redeemed) == 5
    assert uses_count(database_url, coupon.id) == 10
