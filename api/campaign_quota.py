"""The daily cap on campaign codes: a retailer may generate at most ``limit`` codes per UTC day of
the database's clock (COUPON_LEDGER_MAX_CODES_PER_DAY).

A campaign's whole count is charged in the transaction that starts it (the work of its
StartCampaign, see ledger/commands.py InTransaction): a campaign that would take the day past the
limit is refused with 429 RATE_LIMITED before any code is generated (Retry-After: the seconds left
in the UTC day; details: limit, used, requested), and one that is refused for another reason
charges nothing. The count lives in one row per retailer and day (`campaign_codes_daily`), so every
process shares it; the row's update serializes two campaigns of one retailer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg.rows import tuple_row

from api.errors import ApiError
from ledger.commands import Command, InTransaction, StartCampaign
from ledger.domain import Campaign

OPEN_DAY = """
INSERT INTO campaign_codes_daily (retailer_id, day, codes)
VALUES (%(retailer_id)s, (now() AT TIME ZONE 'UTC')::date, 0)
ON CONFLICT (retailer_id, day) DO NOTHING
"""
CHARGE = """
UPDATE campaign_codes_daily SET codes = codes + %(requested)s
WHERE retailer_id = %(retailer_id)s AND day = (now() AT TIME ZONE 'UTC')::date
  AND codes + %(requested)s <= %(limit)s
RETURNING codes
"""
USED = """
SELECT codes,
       ceil(extract(epoch FROM date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day'
                              - (now() AT TIME ZONE 'UTC')))
FROM campaign_codes_daily
WHERE retailer_id = %(retailer_id)s AND day = (now() AT TIME ZONE 'UTC')::date
"""


def charge(conn: Connection[Any], retailer_id: UUID, requested: int, limit: int) -> None:
    """Count ``requested`` codes against the retailer's day, in the caller's transaction; RATE_LIMITED
    (and nothing counted) if that would pass ``limit``."""
    params = {"retailer_id": retailer_id, "requested": requested, "limit": limit}
    curs = conn.cursor(row_factory=tuple_row)
    curs.execute(OPEN_DAY, params)
    if curs.execute(CHARGE, params).fetchone() is not None:
        return
    row = curs.execute(USED, params).fetchone()
    assert row is not None  # OPEN_DAY made it
    used, seconds_left = int(row[0]), max(1, math.ceil(row[1]))
    raise ApiError(
        "RATE_LIMITED",
        f"This campaign would take today's codes to {used + requested}, past the limit of {limit} codes per"
        " day (UTC); retry tomorrow or with a smaller count.",
        limit=limit,
        used=used,
        requested=requested,
        retry_after=seconds_left,
    )


def charged(limit: int) -> Callable[[StartCampaign], Command[Campaign]]:
    """What runs in place of a campaign's StartCampaign: the start with its charge in the same
    transaction."""

    def starting(command: StartCampaign) -> Command[Campaign]:
        def work(conn: Connection[Any], campaign: Campaign) -> Campaign:
            charge(conn, command.retailer_id, command.count, limit)
            return campaign

        return InTransaction(command, work)

    return starting
