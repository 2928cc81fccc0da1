"""The `redemptions` read model and its `redemption_buckets` against the log.

Each `redemptions` row equals its Redemption's events (Recorded, and Reversed if given back)
through the tracking position of the page it was read with; every Redemption the log recorded by
the position verify started from has a row; and every bucket holds exactly the sums of the rows
that fall in it (redemptions by when they were made, reversals by when they were given back), read
in one snapshot.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any
from uuid import UUID

from psycopg.sql import SQL

from ledger.domain import Redemption
from projections.coupons import CouponsView
from projections.redemptions import BUCKET_OF, REDEMPTION_COLUMNS, RedemptionRow
from projections.verify.audit import Audit
from projections.verify.read_model import field_differences, pages
from projections.verify.store import RECORDED


def expected_redemption(events: list[Any], found: RedemptionRow) -> RedemptionRow | None:
    """The row a Redemption's events make (None: no Recorded among them). A redemption recorded
    without its campaign takes its coupon's (the projection reads it from the coupons table), so
    the row's campaign is taken as it is then."""
    recorded = next(iter(events), None)
    if not isinstance(recorded, Redemption.Recorded):
        return None
    reversed_at = next((e.reversed_at for e in events[1:] if isinstance(e, Redemption.Reversed)), None)
    return RedemptionRow(
        id=recorded.originator_id,
        retailer_id=recorded.retailer_id,
        coupon_id=recorded.coupon_id,
        code=recorded.code,
        campaign_id=recorded.campaign_id if recorded.campaign_id is not None else found.campaign_id,
        customer_id=recorded.customer_id,
        order_id=recorded.order_id,
        occurred_at=recorded.timestamp,
        original_subtotal=recorded.original_subtotal,
        discount_amount=recorded.discount_amount,
        final_total=recorded.final_total,
        reversed_at=reversed_at,
    )


def check_redemption_rows(audit: Audit, view: CouponsView, application_name: str) -> None:
    query = f"SELECT {REDEMPTION_COLUMNS} FROM redemptions WHERE id > %s ORDER BY id LIMIT %s"
    names = [f.name for f in fields(RedemptionRow)]
    for position, rows in pages(view, application_name, query):
        streams = audit.store.streams((row["id"] for row in rows), through=position)
        for row in rows:
            found = RedemptionRow(**row)
            wanted = expected_redemption(streams.get(found.id, []), found)
            if found == wanted:
                continue
            if wanted is None:
                audit.violation(
                    f"read model has redemption {found.id} that the event log does not have"
                    f" through notification {position}"
                )
                continue
            differences = field_differences(found, wanted, names)
            audit.violation(
                f"read model redemption {found.id}: {differences} (its events through notification {position})"
            )


def backfill_pending(view: CouponsView) -> bool:
    """Whether the redemptions of a store from before that table are still to be filled in
    (projections/backfill.py): until then the table is empty, not wrong."""
    with view.datastore.get_connection() as conn:
        return conn.execute("SELECT 1 FROM read_model_backfills WHERE name = 'redemptions'").fetchone() is not None


def check_unprojected_redemptions(audit: Audit, view: CouponsView) -> None:
    if backfill_pending(view):
        return
    rows = audit.store.rows(
        SQL(
            "SELECT e.originator_id FROM {events} e WHERE e.notification_id <= %s AND e.topic = %s"
            " AND NOT EXISTS (SELECT 1 FROM redemptions r WHERE r.id = e.originator_id) ORDER BY e.originator_id"
        ),
        (audit.position, RECORDED),
    )
    for row in rows:
        audit.violation(f"read model lacks redemption {row['originator_id']} (projected through {audit.position})")


# Each bucket beside the sums of the rows in it, in one statement: a bucket the rows do not make,
# or rows with no bucket, come out too (a full join on the bucket's key).
BUCKETS_AGAINST_ROWS = f"""
WITH made AS (
    SELECT retailer_id, {BUCKET_OF.format("occurred_at")} AS bucket_start, coupon_id,
           1 AS redemptions, 0 AS reversals, discount_amount AS discount, final_total AS revenue
    FROM redemptions
    UNION ALL
    SELECT retailer_id, {BUCKET_OF.format("reversed_at")}, coupon_id, 0, 1, -discount_amount, -final_total
    FROM redemptions WHERE reversed_at IS NOT NULL
), sums AS (
    SELECT retailer_id, bucket_start, coupon_id, sum(redemptions) AS redemptions, sum(reversals) AS reversals,
           sum(discount) AS discount_total, sum(revenue) AS revenue_total
    FROM made GROUP BY 1, 2, 3
)
SELECT coalesce(b.coupon_id, s.coupon_id) AS coupon_id, coalesce(b.bucket_start, s.bucket_start) AS bucket_start,
       b.redemptions AS b_redemptions, s.redemptions AS s_redemptions, b.reversals AS b_reversals,
       s.reversals AS s_reversals, b.discount_total AS b_discount, s.discount_total AS s_discount,
       b.revenue_total AS b_revenue, s.revenue_total AS s_revenue
FROM redemption_buckets b
FULL JOIN sums s ON (s.retailer_id, s.bucket_start, s.coupon_id) = (b.retailer_id, b.bucket_start, b.coupon_id)
WHERE b.coupon_id IS NULL OR s.coupon_id IS NULL
   OR (b.redemptions, b.reversals, b.discount_total, b.revenue_total)
      IS DISTINCT FROM (s.redemptions, s.reversals, s.discount_total, s.revenue_total)
ORDER BY 1, 2
"""


def check_buckets(audit: Audit, view: CouponsView) -> None:
    with view.datastore.get_connection() as conn:
        rows = conn.execute(BUCKETS_AGAINST_ROWS).fetchall()
    for row in rows:
        coupon_id: UUID = row["coupon_id"]
        when = row["bucket_start"].isoformat()
        if row["s_redemptions"] is None:
            audit.violation(f"{audit.label(coupon_id.int)}: read model bucket {when} has no redemption in it")
        elif row["b_redemptions"] is None:
            audit.violation(f"{audit.label(coupon_id.int)}: read model lacks the bucket {when} of its redemptions")
        else:
            audit.violation(
                f"{audit.label(coupon_id.int)}: read model bucket {when} holds"
                f" {row['b_redemptions']} redemptions, {row['b_reversals']} reversals,"
                f" discount {row['b_discount']}, revenue {row['b_revenue']}; its redemptions make"
                f" {row['s_redemptions']}, {row['s_reversals']}, {row['s_discount']}, {row['s_revenue']}"
            )
