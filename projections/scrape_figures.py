"""The figures /metrics reads from the database when it is scraped: how far the read model is behind
the event log, and how many holds are live.

Read at scrape time rather than kept by a process, so that they are right whichever worker answers
the scrape and whatever state the projection process is in (a stalled projection shows as a growing
lag, not as a stale gauge). Each scrape costs a few indexed queries.

- ``coupon_ledger_projection_lag_events``: events in the log past the projection's tracking
  position (counted up to LAG_COUNT_LIMIT).
- ``coupon_ledger_projection_lag_seconds``: the age of the oldest event not projected yet (0 when
  the read model has caught up).
- ``coupon_ledger_holds_live``: holds (reservations) held and not past their TTL, as the read model
  shows them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import ConnectionPool

from ledger.application import CouponLedger

log = logging.getLogger(__name__)
LAG_COUNT_LIMIT = 1_000_000  # beyond it the lag reads as this: counting further costs more than it tells


@dataclass(frozen=True)
class Figures:
    lag_events: int
    lag_seconds: float
    holds_live: int


def read_figures(pool: ConnectionPool, ledger: CouponLedger, now: datetime | None = None) -> Figures:
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT coalesce(max(notification_id), 0) FROM coupons_projection_tracking WHERE application_name = %s",
            (ledger.name,),
        ).fetchone()
        position = int(row[0]) if row else 0
        row = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM ledger_events WHERE notification_id > %s"
            " ORDER BY notification_id LIMIT %s) AS behind",
            (position, LAG_COUNT_LIMIT),
        ).fetchone()
        lag_events = int(row[0]) if row else 0
        row = conn.execute(
            "SELECT count(*) FROM reservations WHERE status = 'held' AND expires_at > clock_timestamp()"
        ).fetchone()
        holds_live = int(row[0]) if row else 0
    lag_seconds = 0.0
    if lag_events:
        oldest = ledger.recorder.select_notifications(start=position + 1, limit=1)
        if oldest:
            written: datetime = getattr(ledger.mapper.to_domain_event(oldest[0]), "timestamp")  # noqa: B009
            lag_seconds = max(0.0, ((now or datetime.now(UTC)) - written).total_seconds())
    return Figures(lag_events, lag_seconds, holds_live)


class ScrapeFigures:
    """A prometheus-client collector of the figures above (register it on the scrape's registry).
    If the database cannot be read, the scrape goes on without them (and says so in the log)."""

    def __init__(self, pool: ConnectionPool, ledger: CouponLedger) -> None:
        self.pool = pool
        self.ledger = ledger

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            figures = read_figures(self.pool, self.ledger)
        except Exception as error:
            log.warning("metrics: the database figures could not be read (%s)", type(error).__name__)
            return
        yield GaugeMetricFamily(
            "coupon_ledger_projection_lag_events",
            "Events in the log the read model has not projected yet.",
            value=figures.lag_events,
        )
        yield GaugeMetricFamily(
            "coupon_ledger_projection_lag_seconds",
            "Age of the oldest event the read model has not projected yet (0 when caught up).",
            value=figures.lag_seconds,
        )
        yield GaugeMetricFamily(
            "coupon_ledger_holds_live",
            "Holds (reservations) held and not past their TTL, as the read model shows them.",
            value=figures.holds_live,
        )
