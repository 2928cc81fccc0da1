"""The `coupon-ledger` command line: serve, project, migrate, retailer create / key, campaign create, rebuild,
verify."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import uvicorn
from psycopg_pool import ConnectionPool
from pydantic import ValidationError
from tqdm import tqdm

from api.campaign_quota import charged
from api.children import SERVE_FOLDER_ENV, ServeConfig, die_with_parent, join_serve_folder
from api.database import (
    InUse,
    NoStore,
    abandon_embedded,
    apply_schema,
    eventsourcing_env,
    open_database,
    open_ledger,
    require_existing_store,
)
from api.errors import ApiError, validation_errors
from api.retailers import (
    PUBLISHABLE,
    SECRET,
    NewRetailer,
    RetailerNameTaken,
    RetailerNotFound,
    Retailers,
    normalize_retailer_name,
)
from api.schemas import CampaignCreate, in_template
from api.services import cleanup_chores
from api.settings import Settings
from api.shop.orders import Checkout
from api.supervisor import PostmasterWatch, ProjectionProcess, ServeFolder, Server, Supervisor, listen
from ledger.campaigns import MAX_CAMPAIGN_CODES, CampaignPlan, create_campaign
from ledger.errors import InvalidCoupon
from ledger.event_store import CONNECT_TIMEOUT, check_connection
from projections.coupons import UnwritableEvent, construct_view
from projections.rebuild import rebuild
from projections.runner import ProjectionLeader
from projections.sweeper import Sweeper
from projections.verify import verify

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STARTUP_FAILURE = 3  # uvicorn's exit code when the app could not start
IN_USE = 1  # the port or the data folder is held by live processes: nothing was started


class ShutdownSignals:
    """SIGTERM and SIGINT for `serve`: the first stops the service cleanly, a second ends it at once.

    While uvicorn serves, its own handlers take the signals (graceful shutdown: no new connections,
    in-flight requests finish, then the app's lifespan closes). Before it runs (start-up) a signal
    is remembered and serve stops once started; after it has returned (stopping the projection
    process and the embedded PostgreSQL) any signal is a second one: the projection process is
    killed, the embedded server is asked to shut down without waiting, and the process exits.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.phase = "starting"
        self.on_force: list[Callable[[], None]] = []
        self.stop_server: Callable[[], None] = lambda: None
        self._previous = {signum: signal.signal(signum, self._handle) for signum in STOP_SIGNALS}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.phase == "serving":
            # uvicorn handled it and re-raises it as it returns; or it came before uvicorn took over.
            self.requested.set()
            self.stop_server()
            return
        if self.phase == "starting" and not self.requested.is_set():
            log.warning("received %s: stopping once started", signal.Signals(signum).name)
            self.requested.set()
            return
        self.force(signum)

    def force(self, signum: int) -> None:
        print(f"received {signal.Signals(signum).name} again: exiting now", file=sys.stderr, flush=True)
        for callback in self.on_force:
            with contextlib.suppress(Exception):  # exiting anyway
                callback()
        os._exit(128 + signum)

    def serving(self) -> None:
        self.phase = "serving"

    def stopping(self) -> None:
        """uvicorn has returned; re-install the handlers (a multi-worker uvicorn leaves its own)."""
        self.phase = "stopping"
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Claim the port and (embedded) the data folder, then start the database, the projection
    child and uvicorn. A claim held by live processes is refused before anything starts or stops."""
    signals = ShutdownSignals()
    signals.on_force.append(abandon_embedded)
    config = uvicorn_config(args)
    embedded = not settings.database_url
    folder = ServeFolder(settings.data_dir)
    try:
        try:
            if embedded:
                folder.claim()
            listener = listen(config)
            with open_database(settings.database_url, settings.data_dir) as (url, _embedded):
                return serve(args, config, listener, url, settings.data_dir if embedded else None, signals)
        except InUse as in_use:
            print(f"coupon-ledger serve: error: {in_use}; nothing was started or stopped", file=sys.stderr, flush=True)
            return IN_USE
    finally:
        folder.release()
        signals.restore()


def serve(
    args: argparse.Namespace,
    config: uvicorn.Config,
    listener: socket.socket,
    url: str,
    data_dir: Path | None,
    signals: ShutdownSignals,
) -> int:
    if signals.requested.is_set():
        return 0
    apply_schema(url)
    created = create_demo_retailer(url) if data_dir is not None else None
    if created is not None:
        print(
            f"Created the demo retailer {created.retailer_id}. Its API key (shown once): {created.api_key}"
            f"\nIts publishable key, for the storefront routes (shown once): {created.publishable_key}",
            flush=True,
        )
    if signals.requested.is_set():
        return 0
    os.environ["DATABASE_URL"] = url  # worker processes use the same database
    if data_dir is not None:  # the children join serve's claim on the folder
        os.environ[SERVE_FOLDER_ENV] = str(data_dir.resolve())
    # The projections run in a process of their own, beside the API's: on another core, and
    # without taking the GIL from the requests and the writer. The API workers do not project.
    os.environ["COUPON_LEDGER_RUN_PROJECTIONS"] = "false"
    with (
        PostmasterWatch(data_dir) if data_dir is not None else contextlib.nullcontext(),
        ProjectionProcess(os.getpid(), should_stop=signals.requested.is_set) as projection,
    ):
        signals.on_force.insert(0, projection.kill)
        started = True
        if not signals.requested.is_set():
            signals.serving()
            try:
                started = run_uvicorn(config, listener, signals)
            finally:
                signals.stopping()
    if not started and not signals.requested.is_set():
        return STARTUP_FAILURE
    return 0


def uvicorn_config(args: argparse.Namespace) -> uvicorn.Config:
    return ServeConfig(
        "api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        timeout_graceful_shutdown=args.graceful_timeout,
        # uvicorn would otherwise take the client address from X-Forwarded-For of any loopback
        # peer: the app decides whom to believe (COUPON_LEDGER_TRUSTED_PROXIES, api/throttle.py).
        proxy_headers=False,
        forwarded_allow_ips=[],
    )


def run_uvicorn(config: uvicorn.Config, listener: socket.socket, signals: ShutdownSignals) -> bool:
    """Serve until SIGTERM or SIGINT (uvicorn's graceful shutdown); whether the server started."""
    host = f"[{config.host}]" if ":" in config.host else config.host
    logging.getLogger("uvicorn.error").info("Uvicorn running on http://%s:%d (Press CTRL+C to quit)", host, config.port)
    if config.workers > 1:
        supervisor = Supervisor(config, sockets=[listener])
        signals.stop_server = supervisor.should_exit.set
        supervisor.run()
        return True
    server = Server(config)
    signals.stop_server = server.request_exit
    server.run(sockets=[listener])
    return server.started


def create_demo_retailer(url: str) -> NewRetailer | None:
    """On a store without retailers: the `demo` retailer and its demo products; its id and keys."""
    with ConnectionPool(url, min_size=1, max_size=2, kwargs={"autocommit": True}, check=check_connection) as pool:
        retailers = Retailers(pool)
        if retailers.count() != 0:
            return None
        created = retailers.create("demo")
        ledger = open_ledger(eventsourcing_env(url, pool_size=1, max_overflow=0))
        try:
            Checkout(pool, ledger).add_demo_products(created.retailer_id)
        finally:
            ledger.close()
    return created


def cmd_project(args: argparse.Namespace, settings: Settings) -> int:
    """Run the projections until SIGTERM or SIGINT (or, with --parent, until that process is gone).

    Every running `project` takes part in the leader election: one projects, the others stand by.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: stop.set())
    if args.parent is not None:  # started by serve: stop with it, even if it is killed
        die_with_parent(args.parent)
        join_serve_folder()
    with open_database(settings.database_url, settings.data_dir) as (url, _embedded):
        if args.parent is None:  # started by serve, which has just applied it
            apply_schema(url)
        env = eventsourcing_env(url)
        leader = ProjectionLeader(url, env).start()
        # The sweeper runs beside the projection: one process per database sweeps.
        ledger = open_ledger(eventsourcing_env(url, pool_size=2, max_overflow=2))
        view = construct_view(env)
        pool = ConnectionPool(
            url,
            min_size=1,
            max_size=2,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            check=check_connection,
            open=False,
        )
        pool.open(wait=False)
        sweeper = Sweeper(
            url, ledger, view, interval=settings.sweep_interval, chores=cleanup_chores(pool, ledger, settings)
        ).start()
        try:
            while not stop.wait(0.5):
                if args.parent is not None and os.getppid() != args.parent:
                    break  # serve is gone (even killed): do not project on as an orphan
        finally:
            sweeper.stop()
            leader.stop()
            view.datastore.close()
            ledger.close()
            pool.close()
    return 0


def cmd_migrate(_: argparse.Namespace, settings: Settings) -> int:
    with open_database(settings.database_url, settings.data_dir) as (url, _embedded):
        apply_schema(url)
    print("schema applied")
    return 0


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


CAMPAIGN_CREATE = "coupon-ledger campaign create"
# The option of each top-level field of a campaign (the template's fields are inside --coupon).
CAMPAIGN_OPTIONS = {
    "name": "--name",
    "prefix": "--prefix",
    "count": "--count",
    "coupon": "--coupon",
    "max_redemptions": "--max-redemptions",
    "max_discount_total": "--max-discount-total",
}


def cmd_campaign_create(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the campaign as POST /v1/campaigns does (before touching the database), then
    generate its codes with a progress bar on stderr and print one JSON line."""
    request = campaign_request(args)
    if isinstance(request, list):
        return refuse_campaign(request)
    with retailers_of(settings) as (url, retailers):
        try:
            retailer_id = retailers.named(args.retailer)
        except RetailerNotFound as missing:
            print(f"{CAMPAIGN_CREATE}: error: {missing}", file=sys.stderr)
            return 1
        ledger = open_ledger(eventsourcing_env(url, pool_size=2, max_overflow=2))
        try:
            started = time.perf_counter()
            with tqdm(total=request.count, unit="code", file=sys.stderr, desc="codes", dynamic_ncols=True) as bar:

                def advance(generated: int) -> None:
                    bar.update(generated)

                plan = CampaignPlan(
                    retailer_id,
                    request.name,
                    request.prefix,
                    request.count,
                    request.coupon.terms(),
                    request.max_redemptions,
                    request.max_discount_total,
                )
                campaign = create_campaign(ledger, plan, progress=advance, starting=charged(settings.max_codes_per_day))
            seconds = time.perf_counter() - started
        except InvalidCoupon as refused:  # a rule tying the template's terms together
            return refuse_campaign(in_template(refused).details["errors"])
        except ApiError as refused:  # past the day's codes (COUPON_LEDGER_MAX_CODES_PER_DAY)
            print(f"{CAMPAIGN_CREATE}: error: {refused.message} {json.dumps(refused.details)}", file=sys.stderr)
            return 1
        finally:
            ledger.close()
    print(json.dumps({"campaign_id": str(campaign.id), "generated": campaign.generated, "seconds": round(seconds, 2)}))
    return 0


def campaign_request(args: argparse.Namespace) -> CampaignCreate | list[dict[str, str]]:
    """The campaign the options describe, checked by the HTTP API's model; else its errors."""
    try:
        template = json.loads(args.coupon)
    except json.JSONDecodeError as error:
        return [{"field": "coupon", "message": f"is not valid JSON ({error})"}]
    body = {"name": args.name, "prefix": args.prefix, "count": args.count, "coupon": template}
    if args.max_redemptions is not None:
        body["max_redemptions"] = args.max_redemptions
    if args.max_discount_total is not None:
        body["max_discount_total"] = args.max_discount_total
    try:
        return CampaignCreate.model_validate(body)
    except ValidationError as error:
        return validation_errors(error.errors())


def refuse_campaign(errors: list[dict[str, str]]) -> int:
    for error in errors:
        top, _, inner = error["field"].partition(".")
        where = CAMPAIGN_OPTIONS.get(top, top) + (f" {inner}" if inner else "")
        print(f"{CAMPAIGN_CREATE}: error: {where}: {error['message']}", file=sys.stderr)
    return 2


def cmd_rebuild(_: argparse.Namespace, settings: Settings) -> int:
    with open_database(settings.database_url, settings.data_dir) as (url, _embedded):
        apply_schema(url)
        env = eventsourcing_env(url, pool_size=1, max_overflow=1)
        ledger = open_ledger(env)
        view = construct_view(env)
        try:
            head = ledger.recorder.max_notification_id() or 0
            with tqdm(total=head, unit="event", file=sys.stderr, desc="events", dynamic_ncols=True) as bar:

                def advance(events: int) -> None:
                    bar.update(events)

                position = rebuild(ledger, view, progress=advance)
            lag = view.read_lag(ledger.name)
        except UnwritableEvent as error:
            print(f"{REBUILD}: error: {error}; nothing was changed", file=sys.stderr)
            return 1
        finally:
            view.datastore.close()
            ledger.close()
    print(
        f"read model rebuilt through event {position}"
        + (f" (the live projection carries on from there: {lag.behind} event(s) since)" if lag.behind else "")
    )
    return 0


REBUILD = "coupon-ledger rebuild"


def cmd_verify(_: argparse.Namespace, settings: Settings) -> int:
    with open_database(settings.database_url, settings.data_dir) as (url, _embedded):
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
        f"{report.coupons} coupons, {report.redemptions} redemptions, {report.reservations} holds,"
        f" events through {report.head}, "
        f"read model through {report.projected_through}: "
        + ("OK" if not report.violations else f"{len(report.violations)} violation(s)")
    )
    return 1 if report.violations else 0


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
    # Off by default: a line per request costs about a tenth of a request's CPU time.
    serve.add_argument(
        "--access-log", action="store_true", default=False, help="log every request (uvicorn's access log)"
    )
    serve.add_argument(
        "--graceful-timeout",
        type=non_negative_float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM or SIGINT, how long in-flight requests may take to finish before their connections are closed",
    )
    serve.set_defaults(func=cmd_serve)

    project = command(
        "project",
        "run the projections and the sweeper (one process leads across all that run); serve starts one",
        "Run the projections, and the sweeper that records expired holds (every COUPON_LEDGER_SWEEP_INTERVAL "
        "seconds), until SIGTERM or SIGINT. Of all the `project` processes on one database, one projects and "
        "one sweeps (each a PostgreSQL advisory lock) and the others take over if it goes away.",
    )
    project.add_argument("--parent", type=int, default=None, help=argparse.SUPPRESS)
    project.set_defaults(func=cmd_project)

    command("migrate", "apply schema.sql (idempotent; also done at every start)").set_defaults(func=cmd_migrate)

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
    create.set_defaults(func=cmd_retailer_create)
    key = retailer_commands.add_parser(
        "key",
        help="issue a new API key (or publishable key) for a retailer (a lost or leaked key)",
        description="Issue a new secret API key (with --publishable, a publishable key) for the retailer of "
        'this name and print one JSON line with it, {"retailer_id", "api_key" or "publishable_key", '
        '"revoked_keys"} (shown only here). Keys are stored as hashes, so a lost key cannot be shown again: '
        "issue a new one, and with --revoke-others make every older key of the same kind stop working "
        "(within 30 s on running servers); keys of the other kind keep working.",
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
    key.set_defaults(func=cmd_retailer_key)

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
    campaign_create.set_defaults(func=cmd_campaign_create)

    command(
        "rebuild",
        "rebuild the read model (coupons, reservations) from the event log, with a progress bar",
        "Project the whole event log again into the coupons and reservations tables, in one transaction: "
        "readers see the old rows until it commits, the running projection waits and then carries on "
        "from the rebuilt position. On an event the read model cannot hold, nothing is changed (exit 1).",
    ).set_defaults(func=cmd_rebuild)
    command("verify", "check the invariants; exit 1 on any violation").set_defaults(func=cmd_verify)
    return root


# The commands that only read or add to existing data: they never create an empty embedded store
# (serve, migrate and retailer create may).
READS_EXISTING_STORE = {cmd_project, cmd_retailer_key, cmd_campaign_create, cmd_rebuild, cmd_verify}


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds: an embedded server this command started is stopped


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.func is not cmd_serve and args.func is not cmd_project:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    settings = Settings()
    if args.func in READS_EXISTING_STORE:
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
    return int(args.func(args, settings))


if __name__ == "__main__":
    sys.exit(main())
