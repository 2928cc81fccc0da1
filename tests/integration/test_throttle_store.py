"""The brute-force limit's budgets on PostgreSQL: exactly the budget, one state for every process,
atomic under concurrent failures, idle rows swept."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial

import psycopg
import pytest
from psycopg_pool import ConnectionPool
from pyrate_limiter import GCRA, Rate, RateItem, StateBucket, WallClock

from api.throttle import PostgresStateStore, Throttle, delete_idle_rate_limits
from tests.support.postgres import race, scalar

KEY = "0" * 64 + ":customer:cust-1"


@pytest.fixture
def pools(database_url: str) -> Iterator[list[ConnectionPool]]:
    """Two pools on one database: what two server processes each see."""
    opened = [
        ConnectionPool(database_url, min_size=1, max_size=4, kwargs={"autocommit": True}, open=True) for _ in range(2)
    ]
    yield opened
    for pool in opened:
        pool.close()


def test_a_bucket_on_the_store_admits_exactly_the_budget_then_refuses_with_a_wait(
    pools: list[ConnectionPool],
) -> None:
    rate = Rate(5, 60_000)
    bucket = StateBucket([rate], GCRA(), PostgresStateStore(pools[0], KEY), WallClock())
    now = WallClock().now()

    decisions = [bucket.put_decision(RateItem("lookup", now, 1)) for _ in range(7)]

    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2  # type: ignore[union-attr]
    # One unit comes back every window / budget: 12 s.
    assert [d.retry_after_ms for d in decisions[5:]] == [12_000, 12_000]  # type: ignore[union-attr]
    assert bucket.count() == 5


def test_a_refused_failure_spends_nothing(pools: list[ConnectionPool]) -> None:
    store = PostgresStateStore(pools[0], KEY)
    bucket = StateBucket([Rate(2, 60_000)], GCRA(), store, WallClock())
    now = WallClock().now()
    for _ in range(2):
        assert bucket.put(RateItem("lookup", now, 1))
    stored = store.read(GCRA(), [Rate(2, 60_000)])

    assert not bucket.put(RateItem("lookup", now + 10, 1))
    assert store.read(GCRA(), [Rate(2, 60_000)]) == stored
    # Once the wait is over, exactly one more passes.
    assert bucket.put(RateItem("lookup", now + 30_000, 1))
    assert not bucket.put(RateItem("lookup", now + 30_000, 1))


def test_the_throttle_counts_the_budget_then_answers_the_seconds_to_wait(pools: list[ConnectionPool]) -> None:
    throttle = Throttle(pools[0], budget=20, window_seconds=60)

    answers = [throttle.count_failure([KEY]) for _ in range(22)]

    assert answers[:20] == [None] * 20
    assert answers[20:] == [3, 3]  # 60 s / 20, in whole seconds


def test_a_spent_budget_is_remembered_without_asking_the_database_again(pools: list[ConnectionPool]) -> None:
    throttle = Throttle(pools[0], budget=3, window_seconds=60)
    assert throttle.seconds_refused([KEY]) is None
    for _ in range(2):
        assert throttle.count_failure([KEY]) is None
    assert throttle.seconds_refused([KEY]) is None  # one failure left

    assert throttle.count_failure([KEY]) is None  # the last one: answered, and the budget is spent

    assert throttle.seconds_refused([KEY]) == 20
    assert throttle.seconds_refused(["another:customer:cust-2"]) is None


def test_two_processes_share_one_budget(pools: list[ConnectionPool]) -> None:
    first, second = (Throttle(pool, budget=5, window_seconds=60) for pool in pools)

    answers = [(first if i % 2 else second).count_failure([KEY]) for i in range(6)]

    assert answers == [None] * 5 + [12]
    assert first.count_failure([KEY]) == 12
    # A new process (a restart) starts from the same row.
    third = Throttle(pools[1], budget=5, window_seconds=60)
    assert third.count_failure([KEY]) == 12


def test_concurrent_failures_over_two_processes_are_admitted_exactly_the_budget(
    pools: list[ConnectionPool],
) -> None:
    throttles = [Throttle(pool, budget=5, window_seconds=3600) for pool in pools]

    results = race([partial(throttles[i % 2].count_failure, [KEY]) for i in range(30)])

    assert Counter(r is None for r in results) == {True: 5, False: 25}, results


def test_each_budget_key_is_its_own_budget_and_the_row_holds_no_api_key(
    pools: list[ConnectionPool], database_url: str
) -> None:
    throttle = Throttle(pools[0], budget=1, window_seconds=60)
    assert throttle.count_failure([KEY]) is None
    assert throttle.count_failure(["1" * 64 + ":customer:cust-1"]) is None
    assert throttle.count_failure([KEY, "2" * 64 + ":addr:203.0.113.7"]) == 60  # one refusal suffices

    assert scalar(database_url, "SELECT count(*) FROM rate_limit_state") == 3


def test_rows_idle_for_longer_than_the_window_are_deleted(pools: list[ConnectionPool], database_url: str) -> None:
    throttle = Throttle(pools[0], budget=2, window_seconds=60)
    throttle.count_failure([KEY])
    with psycopg.connect(database_url, autocommit=True) as conn:  # an old one, from two minutes ago
        conn.execute(
            "INSERT INTO rate_limit_state VALUES ('old', '{1}', %s)", (datetime.now(UTC) - timedelta(minutes=2),)
        )

    assert throttle.delete_idle() == 1
    assert scalar(database_url, "SELECT array_agg(key) FROM rate_limit_state") == [KEY]
    assert delete_idle_rate_limits(pools[0], 60, now=datetime.now(UTC) + timedelta(seconds=62)) == 1
    # The key starts again from a full budget.
    assert [throttle.count_failure([KEY]) for _ in range(3)] == [None, None, 30]


def test_a_state_that_does_not_fit_the_budget_starts_again(pools: list[ConnectionPool], database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO rate_limit_state VALUES (%s, '{x}', now())", (KEY,))
        conn.execute("INSERT INTO rate_limit_state VALUES ('two', '{1,2}', now())")
    throttle = Throttle(pools[0], budget=1, window_seconds=60)

    assert throttle.count_failure([KEY]) is None
    assert throttle.count_failure(["two"]) is None
