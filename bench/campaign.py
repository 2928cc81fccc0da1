"""python -m bench.campaign: how fast `coupon-ledger campaign create` generates codes, and how soon
the read model lists them all.

On a fresh database (DATABASE_URL's server, else an embedded PostgreSQL in a temporary folder,
removed afterwards), with a retailer made for it, the benchmark starts `coupon-ledger project` (the
projection process `serve` runs beside the API) and then runs `coupon-ledger campaign create
--count N` as a user would. It prints:

- generation: the seconds the command reports (from its first save to its last) and its wall
  time (process start, connection, schema check included), and codes per second of each;
- read model: how long after the command ended the `coupons` read model had processed the whole
  event log, checked by counting the campaign's rows there (all N, or the benchmark fails);
- read back: how long reading every code back in code order takes, as the CSV export does
  (``CouponsView.campaign_coupons``, pages of 5,000).

It reports; it does not judge: the exit code is 0 whatever the figures, non-zero only if the
benchmark itself could not run (or the read model did not list every code).

Usage: python -m bench.campaign [--count 100000] [--timeout 600]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import psycopg
from psycopg_pool import ConnectionPool

from api.database import apply_schema, eventsourcing_env
from api.retailers import Retailers
from bench.harness import benchmark_server, fresh_database, log
from ledger.application import CouponLedger
from ledger.campaigns import CAMPAIGN_CHUNK, MAX_CAMPAIGN_CODES
from projections.coupons import construct_view

CLI = Path(sys.executable).with_name("coupon-ledger")
TEMPLATE = {"discount_type": "percentage", "discount_value": "10", "max_uses": 1}
RETAILER = "bench campaign"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.campaign", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=MAX_CAMPAIGN_CODES, help="codes to generate (default %(default)s)")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds the command, and then the read model, may take"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.count <= MAX_CAMPAIGN_CODES:
        parser.error(f"--count must be 1 to {MAX_CAMPAIGN_CODES}")
    return args


def cli_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("PERSISTENCE_MODULE")}
    env["DATABASE_URL"] = url
    return env


def run(url: str, count: int, timeout: float) -> list[str]:
    """The report's lines."""
    apply_schema(url)
    with ConnectionPool(url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        retailer_id = Retailers(pool).create(RETAILER).retailer_id
    env = eventsourcing_env(url, pool_size=1, max_overflow=1)
    view = construct_view(env)
    projection = subprocess.Popen([str(CLI), "project"], env=cli_env(url), stderr=subprocess.DEVNULL)
    try:
        log(f"generating {count} codes with coupon-ledger campaign create")
        started = time.perf_counter()
        done = subprocess.run(
            [
                *(str(CLI), "campaign", "create", "--retailer", RETAILER, "--name", "bench"),
                *("--prefix", "BENCH-", "--count", str(count), "--coupon", json.dumps(TEMPLATE)),
            ],
            env=cli_env(url),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"campaign create exited {done.returncode}: {done.stderr[-2000:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        campaign_id = UUID(report["campaign_id"])

        ended = time.perf_counter()
        deadline = ended + timeout
        while view.read_lag(CouponLedger.name).behind > 0:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the read model did not catch up within {timeout} s")
            time.sleep(0.01)
        caught_up = time.perf_counter() - ended
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM coupons WHERE campaign_id = %s", (campaign_id,)).fetchone()
        listed = int(row[0]) if row else 0
        if listed != count:
            raise RuntimeError(f"the read model lists {listed} of the campaign's {count} codes")

        reading = time.perf_counter()
        read_back = sum(1 for _ in view.campaign_coupons(retailer_id, campaign_id, datetime.now(UTC)))
        read_seconds = time.perf_counter() - reading
    finally:
        projection.terminate()
        projection.wait(timeout=30)
        view.datastore.close()

    seconds = float(report["seconds"])
    return [
        f"codes: {count} (prefix BENCH-, {CAMPAIGN_CHUNK} per save), retailer {retailer_id}",
        f"generation, as the command reports: {seconds:.2f} s = {count / seconds:,.0f} codes/s",
        f"generation, wall time of the command: {wall:.2f} s = {count / wall:,.0f} codes/s",
        f"read model: every code listed {caught_up:.2f} s after the command ended ({wall + caught_up:.2f} s in all)",
        f"read back in code order (the CSV export's reads): {read_back} codes in {read_seconds:.2f} s",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with benchmark_server("campaign") as (server_url, where):
        log(f"PostgreSQL: {where}")
        with fresh_database(server_url, f"bench_campaign_{uuid4().hex[:12]}") as url:
            lines = run(url, args.count, args.timeout)
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
