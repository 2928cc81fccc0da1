"""The `coupon-ledger` command line: serve, project, migrate, retailer create, verify."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from uuid import UUID

from psycopg_pool import ConnectionPool

from api.checkout import Checkout
from api.database import apply_schema, eventsourcing_env, open_ledger, resolve_database
from api.retailers import Retailers
from api.settings import Settings
from projections.coupons import construct_view
from projections.runner import ProjectionLeader
from projections.verify import verify


def database_url(settings: Settings) -> tuple[str, bool]:
    return resolve_database(settings.database_url, settings.data_dir)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    url, embedded = database_url(settings)
    apply_schema(url)
    if embedded:
        created = create_demo_retailer(url)
        if created is not None:
            retailer_id, api_key = created
            print(f"Created the demo retailer {retailer_id}. Its API key (shown once): {api_key}", flush=True)
    os.environ["DATABASE_URL"] = url  # worker processes use the same database
    # The projections run in a process of their own, beside the API's: on another core, and
    # without taking the GIL from the requests and the writer. The API workers do not project.
    os.environ["COUPON_LEDGER_RUN_PROJECTIONS"] = "false"
    with ProjectionProcess(os.getpid()):
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            access_log=args.access_log,
        )
    return 0


def create_demo_retailer(url: str) -> tuple[UUID, str] | None:
    """On a store without retailers: the `demo` retailer and its demo products; its id and key."""
    with ConnectionPool(url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        retailers = Retailers(pool)
        if retailers.count() != 0:
            return None
        retailer_id, api_key = retailers.create("demo")
        ledger = open_ledger(eventsourcing_env(url, pool_size=1, max_overflow=0))
        try:
            Checkout(pool, ledger).add_demo_products(retailer_id)
        finally:
            ledger.close()
    return retailer_id, api_key


class ProjectionProcess:
    """`coupon-ledger project` as a child of `serve`: restarted if it dies, stopped with serve;
    and if serve itself is killed, the child sees its parent change and stops too."""

    def __init__(self, parent_pid: int) -> None:
        self.command = [sys.executable, "-m", "api.cli", "project", "--parent", str(parent_pid)]
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watchdog = threading.Thread(target=self._keep_running, name="projection-process", daemon=True)

    def __enter__(self) -> ProjectionProcess:
        self.process = subprocess.Popen(self.command)
        self._watchdog.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        self._watchdog.join()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _keep_running(self) -> None:
        while not self._stopping.wait(1.0):
            if self.process is not None and self.process.poll() is not None:
                logging.getLogger(__name__).error(
                    "the projection process exited with %s; starting it again", self.process.returncode
                )
                self.process = subprocess.Popen(self.command)


def cmd_project(args: argparse.Namespace, settings: Settings) -> int:
    """Run the projections until SIGTERM or SIGINT (or, with --parent, until that process is gone).

    Every running `project` takes part in the leader election: one projects, the others stand by.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    url, _embedded = database_url(settings)
    if args.parent is None:  # started by serve, which has just applied it
        apply_schema(url)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    leader = ProjectionLeader(url, eventsourcing_env(url)).start()
    try:
        while not stop.wait(0.5):
            if args.parent is not None and os.getppid() != args.parent:
                break  # serve is gone (even killed): do not project on as an orphan
    finally:
        leader.stop()
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

    project = commands.add_parser(
        "project", help="run the projections (one process leads across all that run); serve starts one"
    )
    project.add_argument("--parent", type=int, default=None, help=argparse.SUPPRESS)
    project.set_defaults(func=cmd_project)

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
