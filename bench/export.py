"""python -m bench.export N: how fast GET /v1/audit/events streams a retailer's log of N events, and
whether the exporting process's memory grows with N (it must not: the export reads a page at a time).

On a fresh database (DATABASE_URL's server, else an embedded PostgreSQL in a temporary folder,
removed afterwards) it makes one retailer's history with the ledger's own save (coupons created
through the writer, then redeemed directly on the aggregates, thousands of events per save: each
event is written with its link in the hash chain, as any other). At SMALL events, then again once
the history holds N, it starts the real `coupon-ledger serve` (one API process), waits until its
projection process has projected the history (so that it takes no CPU from the export), warms the
API process up with an export of the log's last SMALL events (`after`), then streams the whole
export with httpx, reading every line and checking the positions rise, while sampling the API
process's resident memory every 10 ms.

Printed per run: events, seconds, events/s, MB/s, the API process's resident memory before the
export and its peak during it, and the growth. Then, in this process (no HTTP), the Python
allocations of the export's own pipeline (pages read, decoded, encoded as JSON lines), with
tracemalloc: the peak at SMALL events and at N.

It reports; it does not judge: exit 0 whatever the figures.

Usage: python -m bench.export 1000000 [--format jsonl|csv] [--small 10000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import tracemalloc
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import psycopg

from api.database import apply_schema
from api.exports import jsonl_chunks, logged_object
from bench.capacity import StoreLedger, memory_mb, open_as, wait_caught_up
from bench.harness import Tenant, benchmark_server, create_ledger_retailer, fresh_database, ledger_server_command, log
from bench.harness import running as running_server
from ledger.commands import CreateCoupon
from ledger.domain import Coupon
from ledger.exports import retailer_event_pages

SUBTOTAL = Decimal("100.00")
COUPONS = 1_000  # the history is spread over this many coupons
EVENTS_PER_SAVE = 5_000


def grow_history(ledger: StoreLedger, coupons: list[Coupon], retailer_id: UUID, events: int) -> None:
    """Add redemptions until the retailer's log holds ``events`` events (coupons' Created included)."""
    if not coupons:
        for n in range(min(COUPONS, events)):
            created = ledger.execute(
                CreateCoupon(retailer_id, f"EXPORT{n:05d}", {"discount_type": "fixed", "discount_value": Decimal("1")})
            )
            coupons.append(ledger.repository.get(created.id))
    written = sum(c.version for c in coupons)
    now = datetime.now(UTC)
    started, reported = time.perf_counter(), time.monotonic()
    while written < events:
        batch = min(EVENTS_PER_SAVE, events - written)
        touched: dict[UUID, Coupon] = {}
        for i in range(batch):
            coupon = coupons[(written + i) % len(coupons)]
            coupon.redeem(uuid4(), SUBTOTAL, now, None)
            touched[coupon.id] = coupon
        ledger.save(*touched.values())
        written += batch
        if time.monotonic() - reported > 10:
            reported = time.monotonic()
            log(f"history: {written:,} events ({written / (time.perf_counter() - started):,.0f}/s)")


def rss_mb(pid: int) -> float:
    return memory_mb(pid).get("VmRSS", 0.0)


class MemorySampler(threading.Thread):
    """The peak resident memory (MB) of a process, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self._done.wait(0.01)

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak


def export_over_http(base_url: str, tenant: Tenant, pid: int, export_format: str, after: int = 0) -> dict[str, float]:
    before = rss_mb(pid)
    sampler = MemorySampler(pid)
    sampler.start()
    events, size, last = 0, 0, 0
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    params: dict[str, str | int] = {"format": export_format, "after": after}
    with httpx.stream(
        "GET",
        f"{base_url}/v1/audit/events",
        params=params,
        headers=headers,
        timeout=600,
    ) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            size += len(line) + 1
            if export_format == "jsonl":
                position = json.loads(line)["position"]
                if position <= last:
                    raise RuntimeError(f"position {position} after {last}")
                last = position
            events += 1
    seconds = time.perf_counter() - started
    peak = sampler.stop()
    if export_format == "csv":
        events -= 1  # the header row
    return {"events": events, "seconds": seconds, "mb": size / 1e6, "before": before, "peak": peak}


def pipeline_peak(ledger: StoreLedger, retailer_id: UUID) -> tuple[int, float]:
    """(events, tracemalloc peak in MB) of the export's pipeline in this process, without HTTP."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    lines = 0
    for chunk in jsonl_chunks(retailer_event_pages(ledger, retailer_id), logged_object):
        lines += chunk.count(b"\n")
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return lines, peak / 1e6


def report(label: str, run: dict[str, float]) -> None:
    rate = run["events"] / run["seconds"]
    print(
        f"{label:>8}: {run['events']:>10,.0f} events in {run['seconds']:7.2f} s = {rate:>9,.0f}"
        f" events/s ({run['mb'] / run['seconds']:5.1f} MB/s); server RSS {run['before']:6.1f} MB before,"
        f" peak {run['peak']:6.1f} MB, growth {run['peak'] - run['before']:+6.1f} MB",
        flush=True,
    )


def max_position(url: str, retailer_id: UUID) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT max(notification_id) FROM ledger_events WHERE retailer_id = %s", (retailer_id,)
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def measure(url: str, tenant: Tenant, label: str, warm_up: int, export_format: str) -> None:
    """On a fresh server: the projection caught up, a warm-up export of the last ``warm_up`` events, then the whole."""
    with tempfile.TemporaryDirectory(prefix="bench-export-") as log_dir:
        command = [*ledger_server_command(), "--workers", "1"]
        with running_server("ledger", command, url, Path(log_dir)) as server:
            log(f"projection caught up in {wait_caught_up(url, timeout=3600):.0f} s")
            pid = server.process.pid  # with one worker, serve's own process answers the requests
            after = max(0, max_position(url, tenant.retailer_id) - warm_up)
            export_over_http(server.base_url, tenant, pid, export_format, after=after)
            report(label, export_over_http(server.base_url, tenant, pid, export_format))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("events", type=int, help="events in the retailer's log for the large run")
    parser.add_argument("--small", type=int, default=10_000, help="events for the small run (default 10,000)")
    parser.add_argument("--format", dest="export_format", choices=["jsonl", "csv"], default="jsonl")
    args = parser.parse_args(argv)
    with benchmark_server("export") as (server_url, where), fresh_database(server_url, "bench_export") as url:
        log(f"PostgreSQL: {where}")
        apply_schema(url)
        tenant = create_ledger_retailer(url)
        ledger = open_as(StoreLedger, url, pool_size=2)
        coupons: list[Coupon] = []
        try:
            grow_history(ledger, coupons, tenant.retailer_id, args.small)
            measure(url, tenant, "small", args.small, args.export_format)
            small = pipeline_peak(ledger, tenant.retailer_id)
            started = time.perf_counter()
            grow_history(ledger, coupons, tenant.retailer_id, args.events)
            log(f"history of {args.events:,} events made in {time.perf_counter() - started:.0f} s")
            measure(url, tenant, "large", args.small, args.export_format)
            large = pipeline_peak(ledger, tenant.retailer_id)
            for events, peak in (small, large):
                print(f"pipeline in-process: {events:>10,} events, tracemalloc peak {peak:6.2f} MB", flush=True)
        finally:
            ledger.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
