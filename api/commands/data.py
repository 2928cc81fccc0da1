"""The commands on the database and its read model: migrate, project (the projections and the
sweeper), rebuild and verify."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from psycopg_pool import ConnectionPool
from tqdm import tqdm

from api.children import die_with_parent, join_serve_folder
from api.commands.signals import STOP_SIGNALS, StopFlag
from api.database import apply_schema, eventsourcing_env, open_database, open_ledger
from api.services import cleanup_chores
from api.settings import Settings
from api.signing import DigestSigner
from ledger.event_store import CONNECT_TIMEOUT, check_connection
from projections.coupons import UnwritableEvent, construct_view
from projections.leader import COUPONS_PROJECTION, ProjectionLeader
from projections.rebuild import RebuildRunning, rebuild
from projections.sweeper import Sweeper
from projections.verify import verify
from projections.webhooks import WEBHOOKS_PROJECTION, Webhooks


def cmd_project(args: argparse.Namespace, settings: Settings) -> int:
    """Run the projections until SIGTERM or SIGINT (or, with --parent, until that process is gone).

    Every running `project` takes part in the leader election: one projects, the others stand by.
    """
    stop = StopFlag()  # not an Event: a second signal inside the first one's set() would deadlock
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: stop.set())
    if args.parent is not None:  # started by serve: stop with it, even if it is killed
        die_with_parent(args.parent)
        join_serve_folder()
    with open_database(settings.database_url, settings.data_dir) as (url, _embedded):
        if args.parent is None:  # started by serve, which has just applied it
            apply_schema(url)
        env = eventsourcing_env(url)
        # The coupons projection (with its redemption log) and the webhooks' outbox, from one subscription.
        leader = ProjectionLeader(url, env, projections=(COUPONS_PROJECTION, WEBHOOKS_PROJECTION)).start()
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
        # The webhooks' dispatcher (their outbox is projected by the leader above).
        webhooks = Webhooks(url, settings.webhook_dispatch()).start()
        try:
            while not stop.is_set():
                time.sleep(0.5)  # a signal's handler runs in here; the loop sees it within half a second
                if args.parent is not None and os.getppid() != args.parent:
                    break  # serve is gone (even killed): do not project on as an orphan
        finally:
            # The lead first: another process's projection takes over as soon as this one is gone.
            leader.stop()
            webhooks.stop()
            sweeper.stop()
            view.datastore.close()
            ledger.close()
            pool.close()
    return 0


def cmd_migrate(_: argparse.Namespace, settings: Settings) -> int:
    with open_database(settings.database_url, settings.data_dir) as (url, _embedded):
        apply_schema(url)
    print("schema applied")
    return 0


def cmd_rebuild(_: argparse.Namespace, settings: Settings) -> int:
    with open_database(settings.database_url, settings.data_dir) as (url, _embedded):
        apply_schema(url)
        env = eventsourcing_env(url, pool_size=1, max_overflow=1)
        ledger = open_ledger(env)
        view = construct_view(env)
        try:
            head = ledger.recorder.max_notification_id() or 0
            with tqdm(total=head, unit="event", file=sys.stderr, desc="events", dynamic_ncols=True) as bar:

                def advance(events: int, head: int) -> None:
                    bar.total = max(bar.total or 0, head)  # the log grows while the live tables serve
                    bar.update(events)

                position = rebuild(ledger, view, progress=advance)
            lag = view.read_lag(ledger.name)
        except (UnwritableEvent, RebuildRunning) as error:
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


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    digest = None
    if getattr(args, "digest", None) is not None:
        try:
            digest = json.loads(Path(args.digest).read_text())
        except (OSError, ValueError) as error:
            print(f"coupon-ledger verify: error: cannot read the digest {args.digest}: {error}", file=sys.stderr)
            return 2
        if not isinstance(digest, dict):
            print(f"coupon-ledger verify: error: {args.digest} holds no digest (a JSON object)", file=sys.stderr)
            return 2
    with open_database(settings.database_url, settings.data_dir) as (url, _embedded):
        apply_schema(url)
        env = eventsourcing_env(url, pool_size=1, max_overflow=0)
        ledger = open_ledger(env)
        view = construct_view(env)
        signer = DigestSigner.stored(url) if digest is not None else None
        try:
            verifies = digest is not None and signer is not None and signer.verifies(digest)
            report = verify(ledger, view, digest=digest, digest_verifies=verifies)
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
