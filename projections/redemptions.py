"""The `redemptions` read model (one row per use of a coupon, with its reversal) and the
`redemption_buckets` beside it (a coupon's figures per 15 minutes of UTC), both written by the
coupons projection in its batch transactions, under its tracking record.

Every use of a coupon records a Redemption aggregate (apply with or without an Idempotency-Key,
the confirm of a hold, checkout's order and a checkout session's order alike), and every reversal
its Redemption.Reversed: the rows are projected from those two events. A redemption adds one
redemption, its discount and its final total to the bucket of its time; its reversal adds one
reversal and takes the same discount and final total off the bucket of the reversal's time.

Every time zone's offset is a whole number of 15-minute steps, so every local day is a whole run of
buckets: the daily figures of any zone are sums of buckets (projections/analytics.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow

BUCKET_SECONDS = 900  # 15 minutes: every zone's UTC offset is a multiple of it
# The start of the bucket holding a timestamp (whole 15 minutes since the Unix epoch, in UTC).
BUCKET_OF = "to_timestamp(floor(extract(epoch FROM {0}) / 900) * 900)"


@dataclass(frozen=True)
class NewRedemption:
    """A use of a coupon, from its Redemption.Recorded event."""

    id: UUID
    retailer_id: UUID
    coupon_id: UUID
    code: str
    campaign_id: UUID | None
    customer_id: str | None
    order_id: str | None
    occurred_at: datetime
    original_subtotal: Decimal
    discount_amount: Decimal
    final_total: Decimal


@dataclass(frozen=True)
class RedemptionReversal:
    """A use given back, from its Redemption.Reversed event."""

    id: UUID
    reversed_at: datetime


@dataclass(frozen=True)
class RedemptionRow(NewRedemption):
    """A row of the `redemptions` read model: the use, and when it was given back."""

    reversed_at: datetime | None


REDEMPTION_COLUMNS = (
    "id, retailer_id, coupon_id, code, campaign_id, customer_id, order_id, occurred_at, original_subtotal,"
    " discount_amount, final_total, reversed_at"
)

# A batch's new redemptions and their buckets, in one statement, its arrays sent in binary (psycopg
# dumps them in less than half the time of text arrays). The buckets are summed per (retailer,
# bucket, coupon) before the upsert, which may then touch each bucket row once. A redemption
# recorded before its campaign was (events of version 1) takes its coupon's campaign.
# A redemption already in the table (its event projected again after the other tables alone were
# reset) is left as it is and not counted again; so is a reversal already recorded.
INSERT_REDEMPTIONS = f"""
WITH new AS (
    INSERT INTO redemptions ({REDEMPTION_COLUMNS})
    SELECT u.id, u.retailer_id, u.coupon_id, u.code, coalesce(u.campaign_id, c.campaign_id), u.customer_id,
           u.order_id, u.occurred_at, u.original_subtotal, u.discount_amount, u.final_total, NULL
    FROM unnest(%b::uuid[], %b::uuid[], %b::uuid[], %b::text[], %b::uuid[], %b::text[], %b::text[],
                %b::timestamptz[], %b::numeric[], %b::numeric[], %b::numeric[])
        AS u(id, retailer_id, coupon_id, code, campaign_id, customer_id, order_id, occurred_at,
             original_subtotal, discount_amount, final_total)
    LEFT JOIN coupons c ON c.id = u.coupon_id
    ON CONFLICT (id) DO NOTHING
    RETURNING retailer_id, coupon_id, code, campaign_id, occurred_at, discount_amount, final_total
)
INSERT INTO redemption_buckets AS b
    (retailer_id, bucket_start, coupon_id, code, campaign_id, redemptions, reversals, discount_total, revenue_total)
SELECT retailer_id, {BUCKET_OF.format("occurred_at")}, coupon_id, code, campaign_id,
       count(*), 0, sum(discount_amount), sum(final_total)
FROM new GROUP BY 1, 2, 3, 4, 5
ON CONFLICT (retailer_id, bucket_start, coupon_id) DO UPDATE SET
    redemptions = b.redemptions + excluded.redemptions,
    discount_total = b.discount_total + excluded.discount_total,
    revenue_total = b.revenue_total + excluded.revenue_total
"""

# A batch's reversals and their buckets: each redemption is reversed once (the aggregate refuses a
# second reversal; a row already reversed is left as it is), its amounts taken off the reversal's bucket.
REVERSE_REDEMPTIONS = f"""
WITH reversed AS (
    UPDATE redemptions r SET reversed_at = u.reversed_at
    FROM unnest(%b::uuid[], %b::timestamptz[]) AS u(id, reversed_at)
    WHERE r.id = u.id AND r.reversed_at IS NULL
    RETURNING r.retailer_id, r.coupon_id, r.code, r.campaign_id, r.reversed_at, r.discount_amount, r.final_total
)
INSERT INTO redemption_buckets AS b
    (retailer_id, bucket_start, coupon_id, code, campaign_id, redemptions, reversals, discount_total, revenue_total)
SELECT retailer_id, {BUCKET_OF.format("reversed_at")}, coupon_id, code, campaign_id,
       0, count(*), -sum(discount_amount), -sum(final_total)
FROM reversed GROUP BY 1, 2, 3, 4, 5
ON CONFLICT (retailer_id, bucket_start, coupon_id) DO UPDATE SET
    reversals = b.reversals + excluded.reversals,
    discount_total = b.discount_total + excluded.discount_total,
    revenue_total = b.revenue_total + excluded.revenue_total
"""


def write_redemptions(
    curs: Cursor[DictRow], redemptions: Sequence[NewRedemption], reversals: Sequence[RedemptionReversal]
) -> None:
    """A batch's redemptions, then its reversals (a reversal may be of a redemption of the same
    batch), in the caller's transaction. After the `coupons` rows: a redemption of a version-1 event
    reads its coupon's campaign from them."""
    if redemptions:
        curs.execute(
            INSERT_REDEMPTIONS,
            (
                [r.id for r in redemptions],
                [r.retailer_id for r in redemptions],
                [r.coupon_id for r in redemptions],
                [r.code for r in redemptions],
                [r.campaign_id for r in redemptions],
                [r.customer_id for r in redemptions],
                [r.order_id for r in redemptions],
                [r.occurred_at for r in redemptions],
                [r.original_subtotal for r in redemptions],
                [r.discount_amount for r in redemptions],
                [r.final_total for r in redemptions],
            ),
        )
    if reversals:
        curs.execute(REVERSE_REDEMPTIONS, ([r.id for r in reversals], [r.reversed_at for r in reversals]))


@dataclass(frozen=True)
class RedemptionFilter:
    """What GET /v1/redemptions narrows the list to (None: any)."""

    coupon_id: UUID | None = None
    campaign_id: UUID | None = None
    customer_id: str | None = None
    occurred_from: datetime | None = None  # inclusive
    occurred_to: datetime | None = None  # inclusive


# The filters of GET /v1/redemptions: only those given are in the query, so that each query is
# planned on the index that serves it (by retailer, coupon, campaign or customer, each in
# (occurred_at, id) order).
FILTERS = {
    "coupon_id": "coupon_id = %(coupon_id)s",
    "campaign_id": "campaign_id = %(campaign_id)s",
    "customer_id": "customer_id = %(customer_id)s",
    "occurred_from": "occurred_at >= %(occurred_from)s",
    "occurred_to": "occurred_at <= %(occurred_to)s",
}


def list_redemptions(
    datastore: PostgresDatastore,
    retailer_id: UUID,
    where: RedemptionFilter,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[RedemptionRow]:
    """A retailer's redemptions, oldest first, after the (occurred_at, id) of the previous page's last."""
    params: dict[str, object] = {"retailer_id": retailer_id, "limit": limit}
    conditions = ["retailer_id = %(retailer_id)s"]
    for name, condition in FILTERS.items():
        value = getattr(where, name)
        if value is not None:
            conditions.append(condition)
            params[name] = value
    if after is not None:
        conditions.append("(occurred_at, id) > (%(after_at)s, %(after_id)s)")
        params.update(after_at=after[0], after_id=after[1])
    query = (
        f"SELECT {REDEMPTION_COLUMNS} FROM redemptions WHERE {' AND '.join(conditions)}"
        " ORDER BY occurred_at, id LIMIT %(limit)s"
    )
    with datastore.transaction(commit=False) as curs:
        curs.execute(query, params)
        return [RedemptionRow(**row) for row in curs.fetchall()]


def get_redemption(datastore: PostgresDatastore, retailer_id: UUID, redemption_id: UUID) -> RedemptionRow | None:
    """One of the retailer's redemptions; None for another retailer's, like a missing one."""
    with datastore.transaction(commit=False) as curs:
        curs.execute(
            f"SELECT {REDEMPTION_COLUMNS} FROM redemptions WHERE id = %s AND retailer_id = %s",
            (redemption_id, retailer_id),
        )
        row = curs.fetchone()
    return None if row is None else RedemptionRow(**row)
