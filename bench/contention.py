"""What optimistic concurrency costs: redemptions on one hot coupon vs. one coupon per thread.

Runs both scenarios in the same process on the same PostgreSQL (embedded unless
DATABASE_URL is set) and prints throughput, lost version races per success, and the
ratio between the two. Usage: python bench/contention.py [--threads 8] [--per-thread 50]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import warnings
from decimal import Decimal
from pathlib import Path
from uuid import uuid4

from api.database import apply_schema, eventsourcing_env, open_ledger, start_embedded
from ledger.application import CouponLedger


def run(ledger: CouponLedger, codes: list[str], retailer_id: object, per_thread: int) -> tuple[float, int]:
    barrier = threading.Barrier(len(codes))
    conflicts_before = ledger.version_conflicts

    def worker(code: str) -> None:
        barrier.wait()
        for _ in range(per_thread):
            ledger.apply(retailer_id, code, Decimal("100.00"))  # type: ignore[arg-type]

    threads = [threading.Thread(target=worker, args=(code,)) for code in codes]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, ledger.version_conflicts - conflicts_before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-thread", type=int, default=50)
    args = parser.parse_args()

    warnings.filterwarnings("ignore")
    url = os.environ.get("DATABASE_URL") or start_embedded(Path(tempfile.mkdtemp()) / "bench")
    apply_schema(url)
    ledger = open_ledger(eventsourcing_env(url, pool_size=args.threads, max_overflow=args.threads))
    ledger.writer.max_attempts = 10_000  # measure the cost of retrying, never give up
    retailer_id = uuid4()
    total = args.threads * args.per_thread

    hot = f"HOT-{uuid4().hex[:8]}".upper()
    ledger.create_coupon(retailer_id, hot, "fixed", Decimal("5.00"))
    spread = [f"C{i}-{uuid4().hex[:8]}".upper() for i in range(args.threads)]
    for code in spread:
        ledger.create_coupon(retailer_id, code, "fixed", Decimal("5.00"))

    spread_s, spread_conflicts = run(ledger, spread, retailer_id, args.per_thread)
    hot_s, hot_conflicts = run(ledger, [hot] * args.threads, retailer_id, args.per_thread)
    assert ledger.get_coupon(retailer_id, hot).uses_count == total

    print(f"{args.threads} threads x {args.per_thread} redemptions = {total} per scenario")
    for label, seconds, conflicts in (
        ("one coupon per thread", spread_s, spread_conflicts),
        ("one hot coupon", hot_s, hot_conflicts),
    ):
        print(f"{label:22}: {total / seconds:8.1f} redemptions/s, {conflicts / total:.2f} conflicts/success")
    print(f"hot / spread throughput ratio: {spread_s / hot_s:.2f}")
    ledger.close()


if __name__ == "__main__":
    main()
