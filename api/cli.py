"""The `coupon-ledger` command line: serve, migrate, retailer create, verify."""

from __future__ import annotations

import argparse
import json
import os
import sys

from psycopg_pool import ConnectionPool

from api.checkout import Checkout
from api.database import apply_schema, eventsourcing_env, open_ledger, resolve_database
from api.retailers import Retailers
from api.settings import Settings
from projections.coupons import construct_view
from projections.verify import verify


def database_url(settings: Settings) -> tuple[str, bool]:
    return resolve_database(settings.database_url, settings.data_dir)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    url, embedded = database_url(settings)
    apply_schema(url)
    with ConnectionPool(url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        retailers = Retailers(pool)
        if embedded and retailers.count() == 0:
            retailer_id, api_key = retailers.create("demo")
            ledger = open_ledger(eventsourcing_env(url, pool_size=1, max_overflow=0))
            Checkout(pool, ledger).add_demo_products()
            ledger.close()
            print(f"Created the demo retailer {retailer_id}. Its API key (shown once): {api_key}", flush=True)
    os.environ["DATABASE_URL"] = url  # worker processes use the same database
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
    )
    return 0


def cmd_migrate(_: argparse.Namespace, settings: Settings) -> int:
    url, _embedded = database_url(settings)
    apply_schema(url)
    print("schema applied")
    return 0


def cmd_retailer_create(args: argparse.Namespace, settings: Settings) -> int:
    url, _embedded = database_url(settings)
    apply_schema(url)
    with ConnectionPool(url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        retailer_id, api_key = Retailers(pool).create(args.name)
    print(json.dumps({"retailer_id": str(retailer_id), "api_key": api_key}))
    return 0


def cmd_verify(_: argparse.Namespace, settings: Settings) -> int:
    url, _embedded = database_url(settings)
    apply_schema(url)
    env = eventsourcing_env(url, pool_size=1, max_overflow=0)
    ledger = open_ledger(env)
    view = construct_view(env)
    try:
        report = verify(ledger, view)
    finally:
        view.datastore.close()
        ledger.close()
    for violation in report.violations:
        print(f"VIOLATION: {violation}")
    print(
        f"{report.coupons} coupons, {report.redemptions} redemptions, events through {report.head}, "
        f"read model through {report.projected_through}: "
        + ("OK" if not report.violations else f"{len(report.violations)} violation(s)")
    )
    return 1 if report.violations else 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="coupon-ledger", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    # Off by default: a line per request costs about a tenth of a request's CPU time.
    serve.add_argument("--access-log", action="store_true", help="log every request (uvicorn's access log)")
    serve.set_defaults(func=cmd_serve)

    commands.add_parser("migrate", help="apply schema.sql").set_defaults(func=cmd_migrate)

    retailer = commands.add_parser("retailer", help="manage retailers")
    retailer_commands = retailer.add_subparsers(dest="retailer_command", required=True)
    create = retailer_commands.add_parser("create", help="create a retailer and print its API key")
    create.add_argument("name")
    create.set_defaults(func=cmd_retailer_create)

    commands.add_parser("verify", help="check the invariants; exit 1 on any violation").set_defaults(func=cmd_verify)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args, Settings()))


if __name__ == "__main__":
    sys.exit(main())
