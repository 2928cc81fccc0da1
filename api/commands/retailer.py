"""`coupon-ledger retailer create`, `key`, `keys` and `revoke`: a new retailer and its keys, a new key,
the list of a retailer's keys, a key revoked."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import datetime

from psycopg_pool import ConnectionPool

from api.database import apply_schema, open_database
from api.retailers import PUBLISHABLE, SECRET, KeyNotFound, RetailerNameTaken, RetailerNotFound, Retailers
from api.settings import Settings
from ledger.event_store import check_connection
from ledger.timestamps import format_timestamp


@contextlib.contextmanager
def retailers_of(settings: Settings) -> Iterator[tuple[str, Retailers]]:
    """The database's URL (its schema applied) and its retailers, for a command's lifetime."""
    with open_database(settings.database_url, settings.data_dir) as (url, _embedded):
        apply_schema(url)
        with ConnectionPool(url, min_size=1, max_size=1, kwargs={"autocommit": True}, check=check_connection) as pool:
            yield url, Retailers(pool)


def cmd_retailer_create(args: argparse.Namespace, settings: Settings) -> int:
    with retailers_of(settings) as (_url, retailers):
        try:
            created = retailers.create(args.name)
        except RetailerNameTaken as taken:
            print(f"coupon-ledger retailer create: error: {taken}", file=sys.stderr)
            return 1
    printed = {
        "retailer_id": str(created.retailer_id),
        "api_key": created.api_key,
        "publishable_key": created.publishable_key,
    }
    print(json.dumps(printed))
    return 0


def cmd_retailer_key(args: argparse.Namespace, settings: Settings) -> int:
    with retailers_of(settings) as (_url, retailers):
        kind = PUBLISHABLE if args.publishable else SECRET
        try:
            issued = retailers.issue_key(args.name, args.revoke_others, kind)
        except RetailerNotFound as missing:
            print(f"coupon-ledger retailer key: error: {missing}", file=sys.stderr)
            return 1
    name = "publishable_key" if issued.kind == PUBLISHABLE else "api_key"
    print(json.dumps({"retailer_id": str(issued.retailer_id), name: issued.key, "revoked_keys": issued.revoked}))
    return 0


def _timestamp(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def cmd_retailer_keys(args: argparse.Namespace, settings: Settings) -> int:
    with retailers_of(settings) as (_url, retailers):
        try:
            keys = retailers.keys(args.name)
        except RetailerNotFound as missing:
            print(f"coupon-ledger retailer keys: error: {missing}", file=sys.stderr)
            return 1
    for key in keys:
        printed = {
            "key_id": key.key_id,
            "kind": key.kind,
            "prefix": key.prefix,
            "created_at": _timestamp(key.created_at),
            "last_used_at": _timestamp(key.last_used_at),
            "revoked_at": _timestamp(key.revoked_at),
        }
        print(json.dumps(printed))
    return 0


def cmd_retailer_revoke(args: argparse.Namespace, settings: Settings) -> int:
    with retailers_of(settings) as (_url, retailers):
        try:
            revoked = retailers.revoke(args.name, args.key_id)
        except (RetailerNotFound, KeyNotFound) as missing:
            print(f"coupon-ledger retailer revoke: error: {missing}", file=sys.stderr)
            return 1
    print(json.dumps({"key_id": revoked.key_id, "revoked_at": format_timestamp(revoked.revoked_at)}))
    return 0
