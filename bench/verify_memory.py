"""python -m bench.verify_memory N: how long `coupon-ledger verify` takes on a store of N coupons,
and how much memory it needs.

On a fresh database (DATABASE_URL's server, else an embedded PostgreSQL in a temporary folder,
removed afterwards) it generates N coupons through the ledger's campaign path (campaigns of up to
100,000 codes, a thousand coupons per save, each with max_uses; no redemptions), projects the
read model (`rebuild`), then runs `coupon-ledger verify` as a child process and prints its wall
time and peak resident memory (getrusage of the child), and the memory per coupon.

It reports; it does not judge: exit 0 whatever the figures (non-zero only if it could not run or
verify found a violation).

Usage: python -m bench.verify_memory 1000000
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from psycopg_pool import ConnectionPool

from api.database import apply_schema, eventsourcing_env, open_ledger
from api.retailers import Retailers
from bench.harness import benchmark_server, fresh_database, log
from ledger.campaigns import MAX_CAMPAIGN_CODES, CampaignPlan, create_campaign
from projections.coupons import construct_view
from projections.rebuild import rebuild

CLI = Path(sys.executable).with_name("coupon-ledger")
TEMPLATE = {"discount_type": "fixed", "discount_value": Decimal("5.00"), "max_uses": 2}


def fill(url: str, count: int) -> None:
    apply_schema(url)
    with ConnectionPool(url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        retailer_id = Retailers(pool).create("bench verify").retailer_id
    env = eventsourcing_env(url, pool_size=2, max_overflow=2)
    ledger = open_ledger(env)
    view = construct_view(env)
    try:
        started = time.perf_counter()
        made, number = 0, 0
        while made < count:
            size = min(MAX_CAMPAIGN_CODES, count - made)
            campaign = create_campaign(
                ledger, CampaignPlan(retailer_id, f"bench {number}", f"B{number}-", size, TEMPLATE)
            )
            made += campaign.generated
            number += 1
            log(f"{made} coupons, {time.perf_counter() - started:.0f} s")
        log("projecting the read model (rebuild)")
        rebuild(ledger, view)
    finally:
        view.datastore.close()
        ledger.close()


def run_verify(url: str) -> tuple[float, int, int]:
    """(seconds, peak RSS in bytes, exit code) of `coupon-ledger verify`."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("PERSISTENCE_MODULE")}
    env["DATABASE_URL"] = url
    started = time.perf_counter()
    done = subprocess.run([str(CLI), "verify"], env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip())
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verify_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("coupons", type=int, help="how many coupons to generate")
    args = parser.parse_args(argv)
    with benchmark_server("verify") as (server, where), fresh_database(server, "bench_verify") as url:
        log(f"PostgreSQL: {where}")
        started = time.perf_counter()
        fill(url, args.coupons)
        log(f"filled in {time.perf_counter() - started:.0f} s")
        seconds, peak, code = run_verify(url)
    print(
        f"verify of {args.coupons} coupons: {seconds:.1f} s, peak RSS {peak / 2**20:.0f} MiB"
        f" ({peak / max(args.coupons, 1):.0f} bytes per coupon, baseline included), exit {code}"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
