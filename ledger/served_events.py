"""The served form of a recorded event, and its hash.

What the events endpoint and every export answer for an event is ``{"version", "type",
"occurred_at", "data"}`` plus ``prev_hash`` and ``hash``; the hash covers exactly the first four, as
served: ``hash = sha256(prev_hash + canonical)``, where ``canonical`` is their JSON with sorted keys,
no spaces and non-ASCII unescaped, and ``prev_hash`` of version 1 is 64 zeros. So anyone can check a
history from what was served, with no help from us.

The form is frozen: hashes are fixed when an event is written. A change to an event class (a new
field, a renamed one) must come with an upcaster that keeps what older events serve as.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

from ledger.money import format_amount
from ledger.timestamps import format_timestamp

ZERO_HASH = "0" * 64

# The library's envelope of every event: not part of what is served as its data.
EVENT_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})

_CENT = Decimal("0.01")


def _timestamp(value: datetime) -> str:
    """In UTC with Z; one that UTC cannot hold (past year 9999 there) as written, with its offset."""
    try:
        return format_timestamp(value)
    except OverflowError:
        return value.isoformat()


def _amount(value: Decimal) -> str:
    # An amount with two places (every amount the ledger computes) is its own str(): plain notation
    # with two places, which is what format_amount writes, without its arithmetic.
    text = str(value)
    if text[-3:-2] == "." and "E" not in text:
        return text
    return format_amount(value) if value == value.quantize(_CENT) else text


def _mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): jsonable(v) for k, v in value.items()}


def _sequence(value: list[Any] | tuple[Any, ...]) -> list[Any]:
    return [jsonable(v) for v in value]


def _same(value: Any) -> Any:
    return value


# By exact type (the common case, one lookup); subclasses fall back to the checks below.
_SERVE: dict[type, Any] = {
    type(None): _same,
    bool: _same,
    int: _same,
    str: _same,
    Decimal: _amount,
    datetime: _timestamp,
    UUID: str,
    dict: _mapping,
    list: _sequence,
    tuple: _sequence,
}


def jsonable(value: Any) -> Any:
    """An event's value as served: amounts with two places ("10.00"; more only if stored so),
    timestamps in UTC with Z, ids as strings, tuples as lists."""
    serve = _SERVE.get(type(value))
    if serve is not None:
        return serve(value)
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Decimal):
        return _amount(value)
    if isinstance(value, datetime):
        return _timestamp(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        return _mapping(value)
    if isinstance(value, (list, tuple)):
        return _sequence(value)
    raise TypeError(f"an event holds a value of type {type(value).__name__}, which has no served form")


def served_event(event: Any) -> dict[str, Any]:
    """``{"version", "type", "occurred_at", "data"}`` of a domain event, as served."""
    return {
        "version": event.originator_version,
        "type": type(event).__qualname__,
        "occurred_at": _timestamp(event.timestamp),
        "data": {k: jsonable(v) for k, v in event.__dict__.items() if k not in EVENT_ENVELOPE},
    }


# json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False), made once.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(served: Mapping[str, Any]) -> str:
    """The hashed text of a served event: its four fields (not its hashes) as canonical JSON."""
    body = {"version": served["version"], "type": served["type"], "occurred_at": served["occurred_at"]}
    body["data"] = served["data"]
    return _CANONICAL.encode(body)


def event_hash(prev_hash: str, served: Mapping[str, Any]) -> str:
    """The event's ``hash``: sha256 of the previous event's hash (hex) followed by its canonical text."""
    return hashlib.sha256((prev_hash + canonical(served)).encode("utf-8")).hexdigest()


# The same canonical text by orjson, for the writer (ledger/hash_chain.py), which hashes every event
# it stores: sorted keys, no spaces, non-ASCII as is, the same escapes. Amounts and timestamps go
# through the served converters (``default``); what it cannot take as served (a value of a type the
# events endpoint has no form for, a non-string key, an integer past 64 bits) falls back to
# ``event_hash`` over ``served_event``, which is the definition.
_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _served_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _amount(value)
    if isinstance(value, datetime):
        return _timestamp(value)
    raise TypeError(type(value).__name__)


# The timestamp last formatted for hashing, with its text: the events of a batch share their
# decision's time (one datetime object), which is formatted once for all of them.
_last_stamp: tuple[datetime | None, str] = (None, "")


def _stamp(value: datetime) -> str:
    global _last_stamp
    last = _last_stamp
    if last[0] is value:
        return last[1]
    text = _timestamp(value)
    _last_stamp = (value, text)
    return text


def hash_of_event(prev_hash: str, event: Any) -> str:
    """``event_hash(prev_hash, served_event(event))``, in a fraction of the time: the event's own
    amounts and timestamps are converted here (orjson would call back into Python for each), and
    only what is nested goes through ``_served_default``."""
    data: dict[str, Any] = {}
    for key, value in event.__dict__.items():
        if key in EVENT_ENVELOPE:
            continue
        kind = type(value)
        if kind is Decimal:
            value = _amount(value)
        elif kind is datetime:
            value = _stamp(value)
        data[key] = value
    body = {
        "version": event.originator_version,
        "type": type(event).__qualname__,
        "occurred_at": _stamp(event.timestamp),
        "data": data,
    }
    try:
        text = orjson.dumps(body, default=_served_default, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is one
        return event_hash(prev_hash, served_event(event))
    return hashlib.sha256(prev_hash.encode("ascii") + text).hexdigest()
