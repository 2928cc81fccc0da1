"""Timestamps: always timezone-aware, stored and shown in UTC, written with a ``Z``.

The range is what PostgreSQL stores in a ``timestamptz`` column and Python reads back from it
whatever the session's time zone (a value within a day of Python's year 1 or 9999 limits can
be out of range once PostgreSQL shows it in another zone): one day inside both of Python's limits.
"""

from __future__ import annotations

from datetime import UTC, datetime

MIN_TIMESTAMP = datetime(1, 1, 2, tzinfo=UTC)
MAX_TIMESTAMP = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` (``2027-01-31T23:59:59Z``); a naive value is read as UTC."""
    if value.tzinfo is UTC:  # the common case: isoformat() ends with +00:00
        return value.isoformat()[:-6] + "Z"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


RANGE_MESSAGE = f"must be between {format_timestamp(MIN_TIMESTAMP)} and {format_timestamp(MAX_TIMESTAMP)} in UTC"


def to_utc(value: datetime) -> datetime:
    """The same instant in UTC (a naive value is read as UTC); ValueError outside the range."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(RANGE_MESSAGE) from None
    if not MIN_TIMESTAMP <= utc <= MAX_TIMESTAMP:
        raise ValueError(RANGE_MESSAGE)
    return utc
