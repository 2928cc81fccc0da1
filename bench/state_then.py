"""python -m bench.state_then: the cost of a coupon's state then, against the length of its history.

On a fresh database (DATABASE_URL's server, else an embedded PostgreSQL in a temporary folder) it
writes one coupon with N events (default 1,000,000): a creation, then redemptions, with a reversal
every 10th event and a hold made and released every 50th, each event one millisecond after the
one before. The history is decided by the coupon aggregate itself and written in large batches
through the ledger's recorder, with a snapshot at every multiple of the snapshot interval in the
batch's transaction, exactly as the writer stores them.

Then, on a ledger opened afterwards (nothing cached), it times each read ``--repeat`` times:

- the state after version 1, after a middle version (the worst case: one short of the next
  snapshot, so a snapshot and interval - 1 events are read) and after the last version;
- the state at a moment between two middle events (bisection of point reads, then the state);
- the current coupon: its first read (snapshot and events after it) and later reads (the
  library's cache, brought up to date by one query).

It prints median and p90 in milliseconds for each, and how the history was made. It reports; it
does not judge: the exit code is 0 whatever the figures.

Usage: python -m bench.state_then [N] [--repeat 30] [--chunk 10000]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from api.database import apply_schema, eventsourcing_env, open_ledger
from bench.harness import benchmark_server, fresh_database, log, percentile_ms
from ledger.application import SNAPSHOT_INTERVAL, CouponLedger
from ledger.clock import DECISION_TIME
from ledger.domain import Coupon
from ledger.timestamps import format_timestamp

CODE = "LONGHISTORY"
STEP = timedelta(milliseconds=1)
SUBTOTAL = Decimal("80.00")
DISCOUNT = Decimal("8.00")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.state_then", description=__doc__.splitlines()[0])
    parser.add_argument("events", nargs="?", type=int, default=1_000_000, help="events of the coupon (default 1e6)")
    parser.add_argument("--repeat", type=int, default=30, help="timed reads of each kind (default 30)")
    parser.add_argument("--chunk", type=int, default=10_000, help="events written per save (default 10,000)")
    args = parser.parse_args(argv)
    if args.events < 3:
        parser.error("N must be at least 3")
    return args


def write_history(ledger: CouponLedger, retailer_id: UUID, events: int, chunk: int) -> UUID:
    """One coupon with ``events`` events, one millisecond apart, ending now; written ``chunk`` at a time."""
    start = datetime.now(UTC) - STEP * (events + 1)
    ticks = itertools.count()
    token = DECISION_TIME.set(lambda: start + STEP * next(ticks))
    try:
        coupon = Coupon(
            retailer_id=retailer_id,
            code=CODE,
            discount_type="percentage",
            discount_value=Decimal("10"),
            min_order_value=None,
            expires_at=None,
            max_uses=None,
            is_active=True,
        )
        pending: list[Any] = []
        snapshots: list[Any] = []
        redemptions: list[UUID] = []
        written = 0
        while coupon.version < events:
            version = coupon.version + 1
            if version % 50 == 0 and version < events:
                reservation_id = uuid4()
                coupon._record_hold(reservation_id=reservation_id, expires_at=start + STEP * (version + 10))
                keep(coupon, pending, snapshots)
                coupon.release_hold(reservation_id=reservation_id)
            elif version % 10 == 0 and redemptions:
                coupon.reverse_redemption(redemption_id=redemptions.pop(), discount_amount=DISCOUNT, reason=None)
            else:
                redemption_id = uuid4()
                coupon._record_redemption(
                    redemption_id=redemption_id,
                    original_subtotal=SUBTOTAL,
                    discount_amount=DISCOUNT,
                    final_total=SUBTOTAL - DISCOUNT,
                    order_id=None,
                    reservation_id=None,
                    customer_id=None,
                )
                redemptions.append(redemption_id)
            keep(coupon, pending, snapshots)
            if len(pending) >= chunk or coupon.version >= events:
                stored = [ledger.mapper.to_stored_event(s) for s in snapshots]
                ledger.save(*pending, snapshots=stored)
                written += len(pending)
                pending, snapshots = [], []
                if written % (chunk * 20) < chunk:
                    log(f"{written:,} events written")
        return coupon.id
    finally:
        DECISION_TIME.reset(token)


def keep(coupon: Coupon, pending: list[Any], snapshots: list[Any]) -> None:
    """Move the coupon's new events to ``pending``; snapshot it at each multiple of the interval."""
    pending.extend(coupon.collect_events())
    if coupon.version % SNAPSHOT_INTERVAL == 0:
        snapshots.append(Coupon.Snapshot.take(coupon))


def timed(read: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = read()
        times.append(time.perf_counter() - started)
    return sorted(times), result


def row(name: str, times: list[float], note: str) -> str:
    median = statistics.median(times) * 1000
    return f"{name:<44} {median:>9.2f} {percentile_ms(times, 0.9):>9.2f}   {note}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with benchmark_server("state-then") as (server_url, where), fresh_database(server_url, "state_then") as url:
        apply_schema(url)
        env = eventsourcing_env(url, pool_size=2, max_overflow=2)
        writer = open_ledger(env)
        retailer_id = uuid4()
        started = time.perf_counter()
        try:
            coupon_id = write_history(writer, retailer_id, args.events, args.chunk)
        finally:
            writer.close()
        made = time.perf_counter() - started
        log(f"{args.events:,} events written in {made:.1f} s")

        ledger = open_ledger(env)
        try:
            # The first read of the current coupon, on a ledger that has cached nothing.
            first_current, coupon = timed(lambda: ledger.get_coupon(retailer_id, CODE, archived=True), 1)
            assert coupon.id == coupon_id and coupon.version == args.events, coupon.version
            last = args.events
            interval = SNAPSHOT_INTERVAL
            middle = (last // 2) // interval * interval + interval - 1  # a snapshot, then interval - 1 events
            middle_event: Any = next(iter(ledger.events.get(coupon_id, gt=middle - 1, lte=middle)))
            moment = middle_event.timestamp + STEP / 2
            reads = [
                ("state after version 1", lambda: ledger.coupon_after_version(retailer_id, CODE, 1), "no snapshot"),
                (
                    f"state after version {middle:,} (middle)",
                    lambda: ledger.coupon_after_version(retailer_id, CODE, middle),
                    f"snapshot {middle - interval + 1:,} + {interval - 1} events",
                ),
                (
                    f"state after version {last:,} (last)",
                    lambda: ledger.coupon_after_version(retailer_id, CODE, last),
                    "snapshot + events after it",
                ),
                (
                    "state at a moment between two middle events",
                    lambda: ledger.coupon_at(retailer_id, CODE, moment),
                    f"at {format_timestamp(moment)}",
                ),
                (
                    "current coupon (cached, brought up to date)",
                    lambda: ledger.get_coupon(retailer_id, CODE, archived=True),
                    "what GET /v1/coupons/{code} reads",
                ),
            ]
            lines = [
                f"# state then: one coupon, {args.events:,} events, snapshot interval {interval},"
                f" {args.repeat} reads each; PostgreSQL {where}",
                f"# history written in {made:.1f} s ({args.events / made:,.0f} events/s, {args.chunk:,} per save)",
                f"{'read':<44} {'p50 ms':>9} {'p90 ms':>9}   note",
                row("current coupon, first read (nothing cached)", first_current, "snapshot + events after it"),
            ]
            for name, read, note in reads:
                timed(read, 2)  # warm: the statements prepared, the pages in memory
                times, then = timed(read, args.repeat)
                if name.startswith("state at"):
                    assert then.version == middle, then.version
                    note += f" -> version {then.version:,}"
                lines.append(row(name, times, note))
        finally:
            ledger.close()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
