"""python -m bench.rebuild_swap N: how long `rebuild()` takes on a log of N coupons (campaign
codes, one Coupon.Created event each, plus their campaigns' events), and how long its final
transaction (the catch-up under the batch lock and the swap) holds the projection's batch lock.

On a fresh database (DATABASE_URL's server, else an embedded PostgreSQL in a temporary folder,
removed afterwards). It reports; it does not judge: exit 0 whatever the figures.

Usage: python -m bench.rebuild_swap 200000
"""

from __future__ import annotations

import argparse
import sys
import time
from decimal import Decimal
from typing import Any

from psycopg_pool import ConnectionPool

from api.database import apply_schema, eventsourcing_env, open_ledger
from api.retailers import Retailers
from bench.harness import benchmark_server, fresh_database, log
from ledger.campaigns import MAX_CAMPAIGN_CODES, CampaignPlan, create_campaign
from projections import rebuild as rebuild_module
from projections.coupons import construct_view

TEMPLATE = {"discount_type": "fixed", "discount_value": Decimal("5.00"), "max_uses": 2}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rebuild_swap", description=__doc__.split("\n\n")[0])
    parser.add_argument("coupons", type=int, help="how many coupons to generate")
    args = parser.parse_args(argv)
    with benchmark_server("rebuild") as (server, where), fresh_database(server, "bench_rebuild") as url:
        log(f"PostgreSQL: {where}")
        apply_schema(url)
        with ConnectionPool(url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
            retailer_id = Retailers(pool).create("bench rebuild").retailer_id
        env = eventsourcing_env(url, pool_size=2, max_overflow=2)
        ledger = open_ledger(env)
        view = construct_view(env)
        try:
            made, number = 0, 0
            while made < args.coupons:
                size = min(MAX_CAMPAIGN_CODES, args.coupons - made)
                plan = CampaignPlan(retailer_id, f"bench {number}", f"R{number}-", size, TEMPLATE)
                made += create_campaign(ledger, plan).generated
                number += 1
            events = ledger.recorder.max_notification_id() or 0
            log(f"{made} coupons, {events} events")
            swap_seconds: list[float] = []
            swap = rebuild_module.swap

            def timed_swap(*swap_args: Any) -> int:
                started = time.perf_counter()
                try:
                    return swap(*swap_args)
                finally:
                    swap_seconds.append(time.perf_counter() - started)

            rebuild_module.swap = timed_swap  # type: ignore[assignment]
            started = time.perf_counter()
            rebuild_module.rebuild(ledger, view)
            seconds = time.perf_counter() - started
        finally:
            view.datastore.close()
            ledger.close()
    print(
        f"rebuild of {events} events ({made} coupons): {seconds:.1f} s, {events / seconds:.0f} events/s;"
        f" final transaction (catch-up under the batch lock + swap): {swap_seconds[-1] * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
