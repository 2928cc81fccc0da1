"""python -m bench.neighbours: what a large campaign does to another retailer's applies.

On a fresh database (DATABASE_URL's server, else an embedded PostgreSQL in a temporary folder), it
starts `coupon-ledger serve` (one worker, its projections beside it, as a user runs it), makes two
retailers, and gives the neighbour one unlimited coupon per client. Then ``--clients`` threads each
apply their coupon in a loop (httpx, one connection each):

- alone, for ``--baseline`` seconds: the neighbour's baseline latency;
- while the other retailer's POST /v1/campaigns generates ``--count`` codes: the same load, for as
  long as the campaign takes.

It prints p50, p99 and max of the applies both ways, the ratio of each, applies per second, and the
campaign's duration. It reports; it does not judge: the exit code is 0 whatever the figures.

Usage: python -m bench.neighbours [--count 100000] [--clients 4] [--baseline 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
from psycopg_pool import ConnectionPool

from api.database import apply_schema
from api.retailers import Retailers
from bench.harness import benchmark_server, fresh_database, ledger_server_command, log, percentile_ms, running
from ledger.campaigns import CAMPAIGN_CHUNK, MAX_CAMPAIGN_CODES

TEMPLATE = {"discount_type": "percentage", "discount_value": "10", "max_uses": 1}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.neighbours", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=MAX_CAMPAIGN_CODES, help="campaign codes (default %(default)s)")
    parser.add_argument("--clients", type=int, default=4, help="the neighbour's concurrent clients (default 4)")
    parser.add_argument("--baseline", type=float, default=20.0, help="seconds of load alone (default 20)")
    return parser.parse_args(argv)


class Load:
    """``clients`` threads applying their coupon until stopped; each latency kept with its phase."""

    def __init__(self, base_url: str, api_key: str, codes: list[str]) -> None:
        self.base_url, self.api_key, self.codes = base_url, api_key, codes
        self.phase = "baseline"
        self.latencies: dict[str, list[float]] = {"baseline": [], "campaign": []}
        self.errors: dict[str, int] = {"baseline": 0, "campaign": 0}
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(code,)) for code in codes]

    def client(self, code: str) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=60) as client:
            while not self.stopped.is_set():
                phase = self.phase
                started = time.perf_counter()
                response = client.post("/v1/coupons/apply", json={"code": code, "subtotal": "100.00"})
                elapsed = time.perf_counter() - started
                if phase == self.phase and phase != "between":
                    if response.status_code == 201:
                        self.latencies[phase].append(elapsed)
                    else:
                        self.errors[phase] += 1

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(60)


def figures(latencies: list[float]) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    return percentile_ms(ordered, 0.50), percentile_ms(ordered, 0.99), ordered[-1] * 1000


def run(url: str, args: argparse.Namespace) -> list[str]:
    apply_schema(url)
    with ConnectionPool(url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        retailers = Retailers(pool)
        bulk = retailers.create(f"bulk-{uuid4().hex[:8]}")
        neighbour = retailers.create(f"neighbour-{uuid4().hex[:8]}")
    with (
        tempfile.TemporaryDirectory(prefix="bench-neighbours-") as logs,
        running("ledger", ledger_server_command(), url, Path(logs)) as server,
    ):
        codes = [f"NEAR{n}" for n in range(args.clients)]
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {neighbour.api_key}"}) as c:
            for code in codes:
                made = c.post("/v1/coupons", json={"code": code, "discount_type": "fixed", "discount_value": "1"})
                assert made.status_code == 201, made.text
        load = Load(server.base_url, neighbour.api_key, codes)
        load.phase = "between"  # warm-up
        load.start()
        time.sleep(3)
        load.phase = "baseline"
        log(f"baseline: {args.clients} clients applying for {args.baseline:.0f} s")
        time.sleep(args.baseline)
        load.phase = "campaign"
        log(f"campaign of {args.count} codes, the load going on")
        body: dict[str, Any] = {"name": "bench", "prefix": "BULK-", "count": args.count, "coupon": TEMPLATE}
        started = time.perf_counter()
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {bulk.api_key}"}) as c:
            created = c.post("/v1/campaigns", json=body, timeout=1800)
        campaign_seconds = time.perf_counter() - started
        load.phase = "between"
        load.stop()
        if created.status_code != 201:
            raise RuntimeError(f"the campaign failed: {created.status_code} {created.text[:500]}")
    base, during = figures(load.latencies["baseline"]), figures(load.latencies["campaign"])
    rate = len(load.latencies["baseline"]) / args.baseline, len(load.latencies["campaign"]) / campaign_seconds
    return [
        f"neighbour: {args.clients} clients applying; campaign: {args.count} codes, {CAMPAIGN_CHUNK} per chunk",
        f"campaign: {campaign_seconds:.1f} s = {args.count / campaign_seconds:,.0f} codes/s",
        f"apply alone:           p50 {base[0]:7.1f} ms  p99 {base[1]:7.1f} ms  max {base[2]:7.1f} ms"
        f"  {rate[0]:6.1f}/s  errors {load.errors['baseline']}",
        f"apply during campaign: p50 {during[0]:7.1f} ms  p99 {during[1]:7.1f} ms  max {during[2]:7.1f} ms"
        f"  {rate[1]:6.1f}/s  errors {load.errors['campaign']}",
        f"ratio during/alone:    p50 {during[0] / base[0]:5.2f}x    p99 {during[1] / base[1]:5.2f}x"
        f"    max {during[2] / base[2]:5.2f}x",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 1 <= args.count <= MAX_CAMPAIGN_CODES:
        raise SystemExit(f"--count must be 1 to {MAX_CAMPAIGN_CODES}")
    with benchmark_server("neighbours") as (server_url, where):
        log(f"PostgreSQL: {where}")
        with fresh_database(server_url, f"bench_neighbours_{uuid4().hex[:12]}") as url:
            lines = run(url, args)
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
