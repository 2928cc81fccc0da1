"""The coupons projection on PostgreSQL: exactly once across restarts, crashes, rival runners and leaders."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from decimal import Decimal
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import Tracking
from eventsourcing.projection import ProjectionRunner

from api.database import eventsourcing_env, open_ledger
from ledger.application import CouponLedger
from projections.coupons import CouponsProjection, CouponsView, construct_view
from projections.runner import ProjectionLeader
from projections.verify import verify
from tests.integration.helpers import (
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


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return eventsourcing_env(database_url, pool_size=2, max_overflow=4)


@pytest.fixture
def ledger(env: dict[str, str]) -> Iterator[CouponLedger]:
    ledger = open_ledger(env)
    yield ledger
    ledger.close()


@pytest.fixture
def retailer_id() -> UUID:
    return uuid4()


def redeem(ledger: CouponLedger, retailer_id: UUID, code: str, times: int) -> None:
    for _ in range(times):
        ledger.apply(retailer_id, code, SUBTOTAL)


def runner(
    env: dict[str, str], view_class: type[CouponsView] = CouponsView
) -> ProjectionRunner[CouponLedger, CouponsView]:
    return ProjectionRunner(
        application_class=CouponLedger, projection_class=CouponsProjection, view_class=view_class, env=env
    )


def assert_read_model_matches_log_through_its_tracking_position(url: str, coupon_id: UUID) -> int:
    position = tracking_position(url)
    assert uses_count(url, coupon_id) == redeemed_events(url, coupon_id, through=position)
    return position


class StoppingView(CouponsView):
    """Records nothing after notification ``last``: the runner stops exactly there, mid-stream."""

    last = 0
    went_past = threading.Event()

    def _write(self, tracking: Tracking, statement: str | None = None, params: tuple[object, ...] = ()) -> None:
        if tracking.notification_id > self.last:
            self.went_past.set()
            return
        super()._write(tracking, statement, params)


def test_a_runner_restarted_mid_stream_resumes_without_skipping_or_double_counting(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    coupon = ledger.create_coupon(retailer_id, "RESTART", "percentage", Decimal("10"))
    redeem(ledger, retailer_id, "RESTART", 20)
    middle = notification_id_of(database_url, coupon.id, version=11)  # the 10th Redeemed
    StoppingView.last, StoppingView.went_past = middle, threading.Event()

    with runner(env, StoppingView) as first:
        first.wait(middle, timeout=30)
        assert StoppingView.went_past.wait(30)
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
    """Dies on the k-th redemption after its row UPDATE and tracking INSERT ran, before the commit."""

    crash_on = 0
    redemptions_seen = 0

    def count_redemption(self, coupon_id: UUID, version: int, tracking: Tracking) -> None:
        type(self).redemptions_seen += 1
        super().count_redemption(coupon_id, version, tracking)

    def _insert_tracking(self, curs: psycopg.Cursor, tracking: Tracking) -> None:  # type: ignore[type-arg]
        super()._insert_tracking(curs, tracking)
        if self.redemptions_seen == self.crash_on:
            type(self).crash_on = 0
            curs.execute("SELECT 1")  # the transaction is alive: the crash comes before the commit
            raise Crash(f"crashed on notification {tracking.notification_id}")


def test_a_runner_that_crashes_mid_event_leaves_neither_the_row_change_nor_its_tracking_record(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    coupon = ledger.create_coupon(retailer_id, "CRASH", "fixed", Decimal("5"))
    redeem(ledger, retailer_id, "CRASH", 12)
    k = 7
    kth_redeemed = notification_id_of(database_url, coupon.id, version=k + 1)
    CrashingView.crash_on, CrashingView.redemptions_seen = k, 0

    with runner(env, CrashingView) as crashing, pytest.raises(Crash):
        crashing.wait(head(database_url), timeout=30)

    assert CrashingView.redemptions_seen == k
    assert uses_count(database_url, coupon.id) == k - 1
    assert tracking_position(database_url) < kth_redeemed
    assert_read_model_matches_log_through_its_tracking_position(database_url, coupon.id)

    project_to_head(env, database_url)
    assert tracking_position(database_url) == head(database_url)
    assert uses_count(database_url, coupon.id) == redeemed_events(database_url, coupon.id) == 12


class RacingView(CouponsView):
    """Holds each runner at its first redemption until the rival runner reaches the same event."""

    start_line = StartLine(2, timeout=10)

    def count_redemption(self, coupon_id: UUID, version: int, tracking: Tracking) -> None:
        self.start_line()
        super().count_redemption(coupon_id, version, tracking)


def test_two_runners_on_one_database_never_count_an_event_twice(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    coupon = ledger.create_coupon(retailer_id, "RIVALS", "fixed", Decimal("5"))
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

    assert not RacingView.start_line.barrier.broken, "the two runners never processed the same event together"
    assert reached_head, "neither runner reached the head"
    assert tracking_position(database_url) == target
    assert uses_count(database_url, coupon.id) == redeemed_events(database_url, coupon.id) == 10


def test_of_two_projection_leaders_exactly_one_leads_and_the_other_takes_over_when_it_stops(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    coupon = ledger.create_coupon(retailer_id, "LEADER", "fixed", Decimal("5"))
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


@pytest.fixture
def view(env: dict[str, str]) -> Iterator[CouponsView]:
    view = construct_view(env)
    yield view
    view.datastore.close()


def test_verify_finds_nothing_wrong_with_a_consistent_ledger_and_names_a_tampered_coupon(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    coupon = ledger.create_coupon(retailer_id, "AUDITED", "percentage", Decimal("15"), max_uses=10)
    other = ledger.create_coupon(retailer_id, "UNTOUCHED", "fixed", Decimal("5"))
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


def test_verify_names_every_coupon_whose_read_model_count_disagrees_with_the_log(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    codes = ["FIRST", "SECOND"]
    for code in codes:
        ledger.create_coupon(retailer_id, code, "fixed", Decimal("5"))
        redeem(ledger, retailer_id, code, 1)
    project_to_head(env, database_url)

    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE coupons SET uses_count = uses_count + 1")

    violations = verify(ledger, view).violations
    assert sorted(code for code in codes for v in violations if code in v) == sorted(codes)


def test_a_new_runner_processes_only_the_events_after_the_tracking_position(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID
) -> None:
    coupon = ledger.create_coupon(retailer_id, "RESUME", "fixed", Decimal("5"))
    redeem(ledger, retailer_id, "RESUME", 5)
    project_to_head(env, database_url)
    position = tracking_position(database_url)

    redeem(ledger, retailer_id, "RESUME", 5)
    seen: list[int] = []
    lock = threading.Lock()

    class RecordingView(CouponsView):
        def count_redemption(self, coupon_id: UUID, version: int, tracking: Tracking) -> None:
            with lock:
                seen.append(tracking.notification_id)
            super().count_redemption(coupon_id, version, tracking)

    project_to_head(env, database_url, RecordingView)
    assert seen and min(seen) > position
    assert len(seen) == 5
    assert uses_count(database_url, coupon.id) == 10
