"""`coupon-ledger serve`: the HTTP API, with the projections as a child process, until SIGTERM or
SIGINT; on a new embedded store, the demo retailer."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import sys
from pathlib import Path

import uvicorn
from psycopg_pool import ConnectionPool

from api.children import SERVE_FOLDER_ENV, ServeConfig
from api.commands.signals import ShutdownSignals
from api.database import InUse, abandon_embedded, apply_schema, eventsourcing_env, open_database, open_ledger
from api.http_protocol import CoalescingHttpToolsProtocol
from api.metrics_folder import MetricsFolder
from api.retailers import NewRetailer, Retailers
from api.settings import Settings
from api.shop.orders import Checkout
from api.supervisor import PostmasterWatch, ProjectionProcess, ServeFolder, Server, Supervisor, listen
from ledger.event_store import check_connection

STARTUP_FAILURE = 3  # uvicorn's exit code when the app could not start
IN_USE = 1  # the port or the data folder is held by live processes: nothing was started


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Claim the port and (embedded) the data folder, then start the database, the projection
    child and uvicorn. A claim held by live processes is refused before anything starts or stops."""
    signals = ShutdownSignals()
    signals.on_force.append(abandon_embedded)
    if args.access_log is not None:  # the workers read it from the environment, like every setting
        os.environ["COUPON_LEDGER_ACCESS_LOG"] = "true" if args.access_log else "false"
    config = uvicorn_config(args)
    embedded = not settings.database_url
    folder = ServeFolder(settings.data_dir)
    try:
        try:
            if embedded:
                folder.claim()
            listener = listen(config)
            # Before any metric is made in this process or a child: they all write to this folder.
            with (
                MetricsFolder(),
                open_database(settings.database_url, settings.data_dir) as (url, _embedded),
            ):
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
        http=CoalescingHttpToolsProtocol,  # uvicorn's httptools protocol, a response in one write
        host=args.host,
        port=args.port,
        workers=args.workers,
        # Logging is ours (api/logs.py, set up by ServeConfig in every process): uvicorn's loggers
        # go through it, and its access log is replaced by one line per request (api/access.py).
        log_config=None,
        access_log=False,
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
