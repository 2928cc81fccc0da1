"""python -m bench.audit: what the auditor's and analyst's ledger costs, on one store of N coupons.

On a fresh database (DATABASE_URL's server, else an embedded PostgreSQL in a temporary folder,
removed afterwards) it generates N coupons for one retailer through the campaign path (as
bench.verify_memory does: every coupon one stream, plus the campaigns'), then prints:

- the digest: time of GET /v1/audit/digest's tree over the retailer's N+ streams, and of one
  coupon's proof (each reads every head once);
- verify: wall time and peak resident memory of `coupon-ledger verify` (every chain recomputed);
- rebuild: events per second of `rebuild()` into fresh tables;
- the retailer's export: `python -m bench.export E` (events per second of /v1/audit/events as jsonl
  through a real server, and the exporting process's memory at 10,000 events and at E);
- state then: `python -m bench.state_then M` on a coupon with M events (default 1,000,000);
- the write path: `python -m bench.write_path`, redemptions per second with the hash chain on (the
  harness's ledger side on the hot coupon, engine and HTTP levels), alternately with a baseline
  checkout given with ``--against`` (the commit before the chain), beside the README's last figures.

It reports; it does not judge: exit 0 whatever the figures.

Usage: python -m bench.audit --coupons 1000000 --state-events 1000000 --export-events 1000000
       [--against ../before --against-python ../before/.venv/bin/python]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import psycopg

from api.database import eventsourcing_env, open_ledger
from bench.harness import benchmark_server, fresh_database, log
from bench.verify_memory import fill, run_verify
from ledger.digest import AuditLog
from ledger.event_store import LedgerRecorder
from projections.coupons import construct_view
from projections.rebuild import rebuild


def digest_figures(url: str) -> None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id FROM retailers WHERE name = 'bench verify'").fetchone()
        coupon = conn.execute(
            "SELECT originator_id FROM ledger_events WHERE code IS NOT NULL ORDER BY notification_id DESC LIMIT 1"
        ).fetchone()
    assert row is not None and coupon is not None
    ledger = open_ledger(eventsourcing_env(url, pool_size=1, max_overflow=0))
    try:
        assert isinstance(ledger.recorder, LedgerRecorder)
        audit = AuditLog(ledger.recorder)
        position = audit.position()
        started = time.perf_counter()
        tree = audit.tree(row[0], position)
        seconds = time.perf_counter() - started
        print(f"digest: {tree.streams:,} streams, {tree.events:,} events in {seconds:.1f} s")
        started = time.perf_counter()
        proof = audit.proof(row[0], coupon[0], position)
        seconds = time.perf_counter() - started
        assert proof is not None and proof.root == tree.root
        print(f"proof of one coupon: {len(proof.path)} hashes in {seconds:.1f} s")
    finally:
        ledger.close()


def rebuild_figures(url: str) -> None:
    env = eventsourcing_env(url, pool_size=2, max_overflow=2)
    ledger, view = open_ledger(env), construct_view(env)
    try:
        events = 0

        def progress(done: int, _head: int) -> None:
            nonlocal events
            events += done

        started = time.perf_counter()
        rebuild(ledger, view, progress=progress)
        seconds = time.perf_counter() - started
        print(f"rebuild: {events:,} events in {seconds:.1f} s ({events / seconds:,.0f} events/s)")
    finally:
        view.datastore.close()
        ledger.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--coupons", type=int, default=1_000_000, help="coupons (streams) in the store")
    parser.add_argument("--state-events", type=int, default=1_000_000, help="events of the state-then coupon (0: skip)")
    parser.add_argument("--export-events", type=int, default=1_000_000, help="events of the exported log (0: skip)")
    parser.add_argument("--write-path-rounds", type=int, default=3, help="bench.write_path rounds (0: skip)")
    parser.add_argument("--against", help="bench.write_path's baseline checkout (the commit before the chain)")
    parser.add_argument("--against-python", default=sys.executable, help="the baseline checkout's Python")
    args = parser.parse_args(argv)
    with benchmark_server("audit") as (server, where), fresh_database(server, "bench_audit") as url:
        log(f"PostgreSQL: {where}")
        started = time.perf_counter()
        fill(url, args.coupons)
        log(f"filled in {time.perf_counter() - started:.0f} s")
        digest_figures(url)
        seconds, peak, code = run_verify(url)
        print(f"verify of {args.coupons:,} coupons: {seconds:.1f} s, peak RSS {peak / 2**20:.0f} MiB, exit {code}")
        rebuild_figures(url)
    if args.state_events:
        subprocess.run([sys.executable, "-m", "bench.state_then", str(args.state_events)], check=False)
    if args.export_events:
        subprocess.run([sys.executable, "-m", "bench.export", str(args.export_events)], check=False)
    if args.write_path_rounds:
        against = ["--against", args.against, "--against-python", args.against_python] if args.against else []
        command = [sys.executable, "-m", "bench.write_path", "--rounds", str(args.write_path_rounds), *against]
        subprocess.run(command, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
