"""`coupon-ledger backup FILE` and `restore FILE`: a store to an archive and back (api/backups.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from api.backups import BackupError, NotAnArchive, backup, restore
from api.database import open_database
from api.settings import Settings


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    file = Path(args.file)
    if file.exists() and not args.overwrite:
        print(f"coupon-ledger backup: error: {file} exists (--overwrite replaces it)", file=sys.stderr)
        return 1
    if not file.parent.is_dir():
        print(f"coupon-ledger backup: error: no folder {file.parent} to write {file.name} in", file=sys.stderr)
        return 2
    with open_database(settings.database_url, settings.data_dir) as (url, _embedded):
        print(f"backing up to {file} (one snapshot: writers carry on meanwhile)", file=sys.stderr)
        try:
            summary = backup(url, file)
        except BackupError as error:
            print(f"coupon-ledger backup: error: {error}", file=sys.stderr)
            return 1
    print(json.dumps({"file": str(file), **summary.as_dict()}))
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    file = Path(args.file)
    with open_database(settings.database_url, settings.data_dir) as (url, _embedded):
        print(f"restoring {file}" + (" over everything in the store" if args.replace else ""), file=sys.stderr)
        try:
            summary = restore(url, file, replace=args.replace)
        except NotAnArchive as error:
            print(f"coupon-ledger restore: error: {error}", file=sys.stderr)
            return 2
        except BackupError as error:
            print(f"coupon-ledger restore: error: {error}", file=sys.stderr)
            return 1
    print(json.dumps({"file": str(file), **summary.as_dict()}))
    return 0
