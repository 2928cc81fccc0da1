"""The `campaigns` read model: one row per campaign (id, retailer, creation time), so that a
retailer's campaigns can be listed newest first. Projected from Campaign.Created in the coupons
projection's batches (CouponChanges.campaigns), in the same transaction and tracking record; each
campaign's figures are read from the ledger, where they are exact."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow


class CampaignRow(NamedTuple):
    id: UUID
    retailer_id: UUID
    created_at: datetime


INSERT = """
INSERT INTO campaigns (id, retailer_id, created_at)
SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::timestamptz[])
ON CONFLICT (id) DO NOTHING
"""
PAGE = """
SELECT id, retailer_id, created_at FROM campaigns
WHERE retailer_id = %(retailer_id)s
  AND (%(after_at)s::timestamptz IS NULL OR (created_at, id) < (%(after_at)s, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s
"""


def insert_campaigns(curs: Cursor[DictRow], rows: Sequence[CampaignRow]) -> None:
    """In the projection batch's transaction. A campaign already listed (by the schema's
    backfill from its coupons) keeps its row."""
    if rows:
        curs.execute(INSERT, ([r.id for r in rows], [r.retailer_id for r in rows], [r.created_at for r in rows]))


def list_campaigns(
    datastore: PostgresDatastore, retailer_id: UUID, after: tuple[datetime, UUID] | None, limit: int
) -> list[CampaignRow]:
    """A retailer's campaigns, newest first, after the (created_at, id) of the previous page's last."""
    params = {
        "retailer_id": retailer_id,
        "after_at": after[0] if after else None,
        "after_id": after[1] if after else None,
        "limit": limit,
    }
    with datastore.transaction(commit=False) as curs:
        curs.execute(PAGE, params)
        return [CampaignRow(**row) for row in curs.fetchall()]
