"""`coupon-ledger retailer create` and `retailer key`: a new retailer and its keys, a new key."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator

from psycopg_pool import ConnectionPool

from api.database import apply_schema, open_database
from api.retailers import PUBLISHABLE, SECRET, RetailerNameTaken, RetailerNotFound, Retailers
from api.settings import Settings
from ledger.event_store import check_connection


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
