"""The `redemptions` read model and its 15-minute buckets on PostgreSQL: every use lands one row, a
reversal marks it and is counted on its own day, the daily figures of any zone equal the ones
computed by hand, and a rebuild or a backfill from the log gives the same rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
import pytest

from api.database import apply_schema
from ledger.application import CouponLedger
from projections.analytics import daily_figures
from projections.backfill import fill_backfills
from projections.coupons import construct_view
from projections.leader import ProjectionLeader
from projections.rebuild import rebuild
from projections.redemptions import RedemptionFilter, list_redemptions
from tests.support.commands import apply, confirm, create_campaign, create_coupon, reserve, reverse
from tests.support.ledger import campaign_codes
from tests.support.postgres import ledger_with_clock, project_to_head, wait_for

D = Decimal
# 2031-03-01: New York is on EST (UTC-5) until 9 March; Kolkata is UTC+05:30 all year.
KOLKATA_MIDNIGHT = datetime(2031, 3, 1, 18, 30, tzinfo=UTC)  # 2031-03-02 00:00 in Asia/Kolkata
NEW_YORK_MIDNIGHT = datetime(2031, 3, 2, 5, 0, tzinfo=UTC)  # 2031-03-02 00:00 in America/New_York


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(env: dict[str, str], clock: Clock, open_ledgers: list[CouponLedger]) -> CouponLedger:
    ledger = ledger_with_clock(env, clock)
    open_ledgers.append(ledger)
    return ledger


def rows(url: str, table: str, order: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()  # type: ignore[arg-type]


def figures(env: dict[str, str], retailer_id: UUID, tz: str, group_by: str = "retailer") -> list[tuple[Any, ...]]:
    view = construct_view(env)
    found = daily_figures(view.datastore, retailer_id, date(2031, 2, 28), date(2031, 3, 3), tz, group_by)  # type: ignore[arg-type]
    return [(f.day.isoformat(), f.key, f.redemptions, f.reversals, f.discount_total, f.revenue_total) for f in found]


def test_every_use_of_a_coupon_lands_one_redemption_row_and_a_reversal_marks_it(
    env: dict[str, str], database_url: str, retailer_id: UUID, timed: CouponLedger, clock: Clock
) -> None:
    create_coupon(timed, retailer_id, "EVERYUSE", "fixed", D("10"))
    plain = apply(timed, retailer_id, "EVERYUSE", D("100.00"), order_id="o-1", customer_id="c-1")
    keyed = apply(timed, retailer_id, "EVERYUSE", D("60.00"), idempotency_key="k-1", customer_id="c-2")
    hold = reserve(timed, retailer_id, "EVERYUSE", D("30.00"), customer_id="c-3")
    confirmed = confirm(timed, retailer_id, hold.reservation_id, order_id="o-3")
    clock.now += timedelta(hours=1)
    reverse(timed, retailer_id, keyed.redemption_id)
    project_to_head(env, database_url)

    view = construct_view(env)
    found = {r.id: r for r in list_redemptions(view.datastore, retailer_id, RedemptionFilter(), None, 10)}

    assert set(found) == {plain.redemption_id, keyed.redemption_id, confirmed.redemption_id}
    first = found[plain.redemption_id]
    assert (first.code, first.customer_id, first.order_id) == ("EVERYUSE", "c-1", "o-1")
    assert (first.original_subtotal, first.discount_amount, first.final_total) == (D("100.00"), D("10.00"), D("90.00"))
    assert first.occurred_at == datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
    assert first.reversed_at is None
    assert found[keyed.redemption_id].reversed_at == datetime(2031, 3, 1, 13, 0, tzinfo=UTC)
    third = found[confirmed.redemption_id]
    assert (third.customer_id, third.order_id, third.final_total) == ("c-3", "o-3", D("20.00"))


def redeem_around_midnights(timed: CouponLedger, retailer_id: UUID, clock: Clock) -> None:
    """Two uses either side of Kolkata's midnight, two either side of New York's, and a reversal of
    the first one the next day everywhere."""
    create_coupon(timed, retailer_id, "MIDNIGHT", "fixed", D("10"))
    clock.now = KOLKATA_MIDNIGHT - timedelta(minutes=10)
    first = apply(timed, retailer_id, "MIDNIGHT", D("100.00"))  # 10 off, 90 paid
    clock.now = KOLKATA_MIDNIGHT + timedelta(minutes=10)
    apply(timed, retailer_id, "MIDNIGHT", D("50.00"))  # 10 off, 40 paid
    clock.now = NEW_YORK_MIDNIGHT - timedelta(minutes=10)
    apply(timed, retailer_id, "MIDNIGHT", D("30.00"))  # 10 off, 20 paid
    clock.now = NEW_YORK_MIDNIGHT + timedelta(minutes=10)
    apply(timed, retailer_id, "MIDNIGHT", D("25.00"))  # 10 off, 15 paid
    clock.now = datetime(2031, 3, 2, 18, 0, tzinfo=UTC)  # 23:30 in Kolkata, 13:00 in New York
    reverse(timed, retailer_id, first.redemption_id)


def test_daily_figures_count_each_use_and_reversal_on_its_own_local_day_in_any_zone(
    env: dict[str, str], database_url: str, retailer_id: UUID, timed: CouponLedger, clock: Clock
) -> None:
    redeem_around_midnights(timed, retailer_id, clock)
    project_to_head(env, database_url)

    assert figures(env, retailer_id, "Asia/Kolkata") == [
        ("2031-03-01", None, 1, 0, D("10.00"), D("90.00")),
        ("2031-03-02", None, 3, 1, D("20.00"), D("-15.00")),  # 10+10+10-10; 40+20+15-90
    ]
    assert figures(env, retailer_id, "America/New_York") == [
        ("2031-03-01", None, 3, 0, D("30.00"), D("150.00")),
        ("2031-03-02", None, 1, 1, D("0.00"), D("-75.00")),  # 10-10; 15-90
    ]
    assert figures(env, retailer_id, "UTC") == [
        ("2031-03-01", None, 2, 0, D("20.00"), D("130.00")),
        ("2031-03-02", None, 2, 1, D("10.00"), D("-55.00")),  # 10+10-10; 20+15-90
    ]
    assert figures(env, retailer_id, "Asia/Kolkata", "coupon") == [
        ("2031-03-01", "MIDNIGHT", 1, 0, D("10.00"), D("90.00")),
        ("2031-03-02", "MIDNIGHT", 3, 1, D("20.00"), D("-15.00")),
    ]


def test_daily_figures_group_by_campaign_and_leave_out_other_retailers(
    env: dict[str, str], database_url: str, retailer_id: UUID, timed: CouponLedger, clock: Clock
) -> None:
    campaign = create_campaign(
        timed, retailer_id, "Spring", "SPRING-", 2, {"discount_type": "fixed", "discount_value": D("3")}
    )
    first, second = campaign_codes(timed, campaign.id)
    apply(timed, retailer_id, first, D("20.00"))
    apply(timed, retailer_id, second, D("30.00"))
    create_coupon(timed, retailer_id, "LONE", "fixed", D("5"))
    apply(timed, retailer_id, "LONE", D("20.00"))
    other = UUID(int=retailer_id.int ^ 1)
    create_coupon(timed, other, "LONE", "fixed", D("7"))
    apply(timed, other, "LONE", D("20.00"))
    project_to_head(env, database_url)

    assert figures(env, retailer_id, "UTC", "campaign") == [
        ("2031-03-01", None, 1, 0, D("5.00"), D("15.00")),  # the codes of no campaign
        ("2031-03-01", campaign.id, 2, 0, D("6.00"), D("44.00")),
    ]
    assert figures(env, other, "UTC", "coupon") == [("2031-03-01", "LONE", 1, 0, D("7.00"), D("13.00"))]


def test_a_rebuilt_read_model_holds_the_same_redemptions_and_buckets(
    env: dict[str, str], database_url: str, retailer_id: UUID, timed: CouponLedger, clock: Clock
) -> None:
    redeem_around_midnights(timed, retailer_id, clock)
    project_to_head(env, database_url)
    live = rows(database_url, "redemptions", "id"), rows(database_url, "redemption_buckets", "1, 2, 3")

    rebuild(timed, construct_view(env), page_size=3)

    assert (rows(database_url, "redemptions", "id"), rows(database_url, "redemption_buckets", "1, 2, 3")) == live
    assert len(live[0]) == 4 and len(live[1]) == 5


def test_a_database_from_before_the_redemptions_table_gets_every_past_redemption_on_start(
    env: dict[str, str], database_url: str, retailer_id: UUID, timed: CouponLedger, clock: Clock
) -> None:
    redeem_around_midnights(timed, retailer_id, clock)
    project_to_head(env, database_url)
    live = rows(database_url, "redemptions", "id"), rows(database_url, "redemption_buckets", "1, 2, 3")
    with psycopg.connect(database_url) as conn:  # the database as it was before the tables
        conn.execute("DROP TABLE redemptions, redemption_buckets")

    apply_schema(database_url)
    assert rows(database_url, "redemptions", "id") == []
    assert fill_backfills(timed, construct_view(env)) == ["redemptions"]

    assert (rows(database_url, "redemptions", "id"), rows(database_url, "redemption_buckets", "1, 2, 3")) == live
    assert fill_backfills(timed, construct_view(env)) == []


def test_the_projection_leader_fills_the_redemptions_of_a_database_from_before_and_goes_on(
    env: dict[str, str], database_url: str, retailer_id: UUID, timed: CouponLedger, clock: Clock
) -> None:
    redeem_around_midnights(timed, retailer_id, clock)
    project_to_head(env, database_url)
    with psycopg.connect(database_url) as conn:  # the database as it was before the tables
        conn.execute("DROP TABLE redemptions, redemption_buckets")
    apply_schema(database_url)
    clock.now += timedelta(days=1)
    later = apply(timed, retailer_id, "MIDNIGHT", D("20.00"))  # after the tables: projected live

    leader = ProjectionLeader(database_url, env, poll_interval=0.2).start()
    try:
        wait_for(lambda: len(rows(database_url, "redemptions", "id")) == 5, 15, message="the past redemptions")
        project_to_head(env, database_url)
    finally:
        leader.stop()

    view = construct_view(env)
    found = list_redemptions(view.datastore, retailer_id, RedemptionFilter(), None, 10)
    assert [r.id for r in found][-1] == later.redemption_id
    assert sum(r.reversed_at is not None for r in found) == 1
    assert rows(database_url, "read_model_backfills", "name") == []
