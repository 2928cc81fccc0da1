"""The figures /metrics reads from the database at scrape time: the projection's lag, in events and
in seconds (the age of the oldest event not projected), and the holds live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from psycopg_pool import ConnectionPool

from api.database import eventsourcing_env
from ledger.application import CouponLedger
from ledger.commands import CreateCoupon
from projections.scrape_figures import read_figures
from tests.support.postgres import project_to_head


def test_lag_counts_the_events_not_projected_and_the_age_of_the_oldest(
    ledger: CouponLedger, database_url: str, retailer_id: UUID
) -> None:
    with ConnectionPool(database_url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        assert read_figures(pool, ledger) == read_figures(pool, ledger)
        assert read_figures(pool, ledger).lag_events == 0 and read_figures(pool, ledger).lag_seconds == 0
        for number in range(3):
            terms = {"discount_type": "percentage", "discount_value": Decimal("10")}
            ledger.execute(CreateCoupon(retailer_id, f"LAG{number}", terms))
        later = datetime.now(UTC) + timedelta(seconds=30)
        behind = read_figures(pool, ledger, now=later)
        assert behind.lag_events == 3
        assert 30 <= behind.lag_seconds < 60  # the first of the three, written just now, is 30 s old then
        project_to_head(eventsourcing_env(database_url), database_url)
        caught_up = read_figures(pool, ledger, now=later)
        assert (caught_up.lag_events, caught_up.lag_seconds, caught_up.holds_live) == (0, 0.0, 0)
