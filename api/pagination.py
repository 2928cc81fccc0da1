"""Cursors of the paged routes: opaque to the client (URL-safe base64 of the last item's key),
checked strictly on the way back in (422 VALIDATION_FAILED naming ``cursor``)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import Query

from api.errors import ApiError
from api.schemas import CURSOR_SCHEMA, MAX_BIGINT, check_text
from ledger.domain import CODE_ALPHABET


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def bad_cursor() -> ApiError:
    return ApiError(
        "VALIDATION_FAILED",
        "The cursor is not valid.",
        errors=[{"field": "cursor", "message": "not a cursor returned by this endpoint"}],
    )


def decode_cursor(cursor: str) -> str:
    """The text a cursor encodes; 422 naming ``cursor`` unless it is base64 of UTF-8 text
    without NUL. Each endpoint then checks the decoded value is one it could have returned."""
    try:
        decoded = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
        check_text(decoded)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_cursor() from None
    if not decoded:
        raise bad_cursor()
    return decoded


def decode_code_cursor(cursor: str) -> str:
    code = decode_cursor(cursor)
    if not (3 <= len(code) <= 50 and set(code) <= CODE_ALPHABET):
        raise bad_cursor()
    return code


def encode_sorted_cursor(value: datetime | int, code: str) -> str:
    """The cursor after a coupon in an order by ``value`` (a time or a count), then code."""
    shown = value.isoformat() if isinstance(value, datetime) else str(value)
    return encode_cursor(f"{shown}|{code}")


def decode_sorted_cursor(cursor: str, key: str) -> tuple[datetime | int, str]:
    """The sort key's value and the code a cursor of that order encodes; 422 naming ``cursor``
    for a cursor of another order (a code cursor has no ``|``: codes never do)."""
    shown, bar, code = decode_cursor(cursor).partition("|")
    if not bar or not (3 <= len(code) <= 50 and set(code) <= CODE_ALPHABET):
        raise bad_cursor()
    if key == "created_at":
        try:
            at = datetime.fromisoformat(shown)
        except ValueError:
            raise bad_cursor() from None
        if at.tzinfo is None:
            raise bad_cursor()
        return at, code
    if not (shown.isascii() and shown.isdigit() and int(shown) <= MAX_BIGINT):
        raise bad_cursor()
    return int(shown), code


def decode_version_cursor(cursor: str) -> int:
    decoded = decode_cursor(cursor)
    if not (decoded.isascii() and decoded.isdigit() and int(decoded) <= MAX_BIGINT):
        raise bad_cursor()
    return int(decoded)


# Absent for the first page; when sent, never empty (an empty cursor is 422 like any other bad one).
Cursor = Annotated[str | None, Query(min_length=1, max_length=200, json_schema_extra=CURSOR_SCHEMA)]


def encode_time_cursor(at: datetime, item_id: UUID) -> str:
    """The cursor after an item of a list in (time, id) order."""
    return encode_cursor(f"{at.isoformat()}|{item_id}")


def decode_time_cursor(cursor: str) -> tuple[datetime, UUID]:
    at, _, item_id = decode_cursor(cursor).partition("|")
    try:
        after = datetime.fromisoformat(at), UUID(item_id)
    except ValueError:
        raise bad_cursor() from None
    if after[0].tzinfo is None:
        raise bad_cursor()
    return after
