"""/v1/analytics/daily: the caller's redemptions and reversals per local day of any time zone,
per coupon, campaign or for the whole retailer, as JSON or CSV (from the read model)."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Annotated, Literal

import psycopg
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from api.deps import CallerDep
from api.errors import ApiError
from api.openapi import errors
from api.read_model import read_model
from api.schemas import DAILY_CSV_COLUMNS, TIME_ZONE_SCHEMA, TIME_ZONES, DailyPage, DailyRow, left_out
from projections.analytics import GroupBy, daily_figures

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])

MAX_DAYS = 366
CSV_EXAMPLE = "day,code,redemptions,reversals,discount_total,revenue_total\r\n2027-01-31,SAVE10,12,1,110.00,990.00\r\n"


def invalid(field: str, message: str) -> ApiError:
    return ApiError("VALIDATION_FAILED", f"{field}: {message}", errors=[{"field": field, "message": message}])


KNOWN_ZONES = frozenset(TIME_ZONES)


def check_zone(tz: str) -> str:
    """An IANA zone name (Europe/Paris, Asia/Kolkata, UTC); anything else is a 422 naming tz."""
    if tz not in KNOWN_ZONES:
        raise invalid("tz", f"{tz[:100]!r} is not an IANA time zone (such as Europe/Paris or UTC)")
    return tz


@router.get(
    "/daily",
    response_model=None,
    responses={
        200: {
            "model": DailyPage,
            "description": "One row per local day (and code or campaign) that had a redemption or a reversal; "
            "days with nothing are left out. With format=csv, the same rows as text/csv with a header row.",
            "content": {
                "text/csv": {
                    "schema": {"type": "string", "description": "A header row, then the rows."},
                    "example": CSV_EXAMPLE,
                }
            },
        },
        **errors({503: ["SERVICE_UNAVAILABLE"]}),
    },
)
def daily(
    caller: CallerDep,
    first: Annotated[date, Query(alias="from", description="The first local day (YYYY-MM-DD), inclusive.")],
    last: Annotated[date, Query(alias="to", description="The last local day (YYYY-MM-DD), inclusive.")],
    group_by: Annotated[
        Literal["coupon", "campaign", "retailer"],
        Query(description="coupon: a row per day and code; campaign: per day and campaign_id; retailer: per day."),
    ],
    tz: Annotated[str, Query(json_schema_extra=TIME_ZONE_SCHEMA)] = "UTC",
    format_: Annotated[Literal["json", "csv"], Query(alias="format", description="json (default) or csv.")] = "json",
) -> Response:
    """Per local day from `from` to `to` (at most 366 days), in time zone `tz`: the day's
    redemptions and reversals, and its discount and revenue (final totals) totals: those of the
    day's redemptions less those given back by the day's reversals (so a day may go below zero). A
    reversal counts on the day it was made, whenever its redemption was. Days with no redemption and
    no reversal are left out. Reflects every write acknowledged before the request."""
    zone = check_zone(tz)
    if last < first:
        raise invalid("to", "must not be before from")
    if (last - first).days + 1 > MAX_DAYS:
        raise invalid("to", f"the range may span at most {MAX_DAYS} days")
    services = caller.services
    grouping: GroupBy = group_by
    try:
        found = read_model(
            services,
            "Analytics",
            lambda view: daily_figures(view.datastore, caller.retailer_id, first, last, zone, grouping),
        )
    except psycopg.errors.InvalidParameterValue:  # a zone Python knows and PostgreSQL does not
        raise invalid("tz", f"{tz!r} is not a time zone the database knows") from None
    rows = [DailyRow.of(f, group_by) for f in found]
    if format_ == "csv":
        return Response(
            as_csv(rows, group_by),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="daily-{first}-{last}.csv"'},
        )
    return JSONResponse({"data": [row.shown(group_by) for row in rows]})


def as_csv(rows: list[DailyRow], group_by: str) -> str:
    """The rows as CSV with a header row: the grouping's key column (none for the retailer), then
    the figures, values exactly as in the JSON."""
    shown = [row.shown(group_by) for row in rows]
    columns = [c for c in DAILY_CSV_COLUMNS if c not in left_out(group_by)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    for row in shown:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()
