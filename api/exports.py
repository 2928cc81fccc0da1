"""Streamed exports of the audit trail: pages of events (ledger/exports.py) encoded as JSON lines
or CSV, one chunk per page, sent as they are read.

JSON lines (``application/x-ndjson``): one event per line, the very object the JSON pages serve.
CSV (``text/csv``, RFC 4180, a header row first): one row per event; ``data`` is its canonical
JSON (sorted keys, no spaces, non-ASCII unescaped: the text the event's hash covers), an absent
value (a campaign's ``code``) is an empty cell.

Whatever can be refused is refused before the first byte, in the contract's error shape (the
ledger reads the first page before the response starts). Once the export has begun its status
cannot change: an error after that (the database lost mid-way) aborts the connection, so the
response ends without its final chunk and no client takes a cut export for a whole one; it resumes
from the last complete line (``after`` = its ``position``). A client that disconnects stops the
reading: the next page is never asked for.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, TypeVar

from starlette.responses import StreamingResponse

from ledger.application import RecordedEvent
from ledger.exports import LoggedEvent

JSONL_MEDIA_TYPE = "application/x-ndjson"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
StreamedFormat = Literal["jsonl", "csv"]

EVENT_COLUMNS = ("version", "type", "occurred_at", "data", "prev_hash", "hash")
LOGGED_COLUMNS = ("position", "stream", "code", *EVENT_COLUMNS)

# The media types of the streamed formats, as the OpenAPI document describes a 200.
STREAMED_CONTENT: dict[str, Any] = {
    JSONL_MEDIA_TYPE: {"schema": {"type": "string", "description": "One JSON object per line."}},
    "text/csv": {"schema": {"type": "string", "description": "A header row, then one row per event."}},
}

T = TypeVar("T")

_line = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_canonical = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def event_object(event: RecordedEvent) -> dict[str, Any]:
    """An event as the JSON pages serve it (EventPublic)."""
    return {
        "version": event.version,
        "type": event.type,
        "occurred_at": event.occurred_at,
        "data": event.data,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def logged_object(logged: LoggedEvent) -> dict[str, Any]:
    """An event of the retailer's log: its position, stream and code, then the event as served."""
    return {"position": logged.position, "stream": str(logged.stream), "code": logged.code} | event_object(logged.event)


def jsonl_chunks(pages: Iterable[Sequence[T]], to_object: Callable[[T], dict[str, Any]]) -> Iterator[bytes]:
    for page in pages:
        yield "".join([_line(to_object(item)) + "\n" for item in page]).encode()


def csv_chunks(
    pages: Iterable[Sequence[T]], columns: Sequence[str], to_object: Callable[[T], dict[str, Any]]
) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    yield _taken(buffer)
    for page in pages:
        for item in page:
            row = to_object(item)
            row["data"] = _canonical(row["data"])
            writer.writerow(["" if row[c] is None else row[c] for c in columns])
        yield _taken(buffer)


def _taken(buffer: io.StringIO) -> bytes:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text.encode()


def streamed(
    pages: Iterable[Sequence[T]],
    as_format: StreamedFormat,
    columns: Sequence[str],
    to_object: Callable[[T], dict[str, Any]],
) -> StreamingResponse:
    """The pages as a streamed response of ``as_format``. ``pages`` is a plain iterator: each page
    is read in a worker thread, never on the event loop."""
    if as_format == "csv":
        return StreamingResponse(csv_chunks(pages, columns, to_object), media_type=CSV_MEDIA_TYPE)
    return StreamingResponse(jsonl_chunks(pages, to_object), media_type=JSONL_MEDIA_TYPE)
