"""Daily figures of a retailer's redemptions in any time zone, summed from `redemption_buckets`
(15 minutes of UTC each, see projections/redemptions.py).

A local day of any zone starts and ends on a bucket boundary (every offset is a multiple of 15
minutes), so a day's figures are the exact sum of the buckets inside it. The query reads the
buckets of the range (and a day either side of it, as every offset is within a day of UTC, then
keeps those whose local date is in the range): at most 96 a day for each coupon used or given back
that day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore

GroupBy = Literal["coupon", "campaign", "retailer"]

# The column each grouping adds beside the day (the retailer's figures need none).
GROUP_COLUMN: dict[str, str] = {"coupon": "code", "campaign": "campaign_id", "retailer": "NULL::text"}

DAILY = """
SELECT (bucket_start AT TIME ZONE %(tz)s)::date AS day, {group} AS key,
       sum(redemptions)::bigint AS redemptions, sum(reversals)::bigint AS reversals,
       sum(discount_total) AS discount_total, sum(revenue_total) AS revenue_total
FROM redemption_buckets
WHERE retailer_id = %(retailer_id)s
  AND bucket_start >= (%(from)s::date - 1)::timestamp AT TIME ZONE 'UTC'
  AND bucket_start < (%(to)s::date + 2)::timestamp AT TIME ZONE 'UTC'
  AND (bucket_start AT TIME ZONE %(tz)s)::date BETWEEN %(from)s::date AND %(to)s::date
GROUP BY 1, 2
HAVING sum(redemptions) > 0 OR sum(reversals) > 0
ORDER BY 1, 2 NULLS FIRST
"""


@dataclass(frozen=True)
class DailyFigures:
    day: date
    key: str | UUID | None  # the code, the campaign id (None: codes of no campaign), or None for the retailer
    redemptions: int
    reversals: int
    discount_total: Decimal
    revenue_total: Decimal


def daily_figures(
    datastore: PostgresDatastore, retailer_id: UUID, first: date, last: date, tz: str, group_by: GroupBy
) -> list[DailyFigures]:
    """The figures of each local day from ``first`` to ``last`` (inclusive) in zone ``tz`` (an
    IANA name PostgreSQL knows), per coupon, campaign or for the whole retailer, in day order.
    Days (and coupons, campaigns) with no redemption and no reversal are left out."""
    query = DAILY.format(group=GROUP_COLUMN[group_by])
    params = {"retailer_id": retailer_id, "from": first, "to": last, "tz": tz}
    with datastore.transaction(commit=False) as curs:
        curs.execute(query, params)
        return [DailyFigures(**row) for row in curs.fetchall()]
