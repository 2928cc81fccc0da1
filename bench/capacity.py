"""python -m bench.capacity: what a long history, a restart, peak load and a million coupons cost.

Four steps, each printing a labelled block, then a summary table (figure, measured, goal). It
reports; it does not judge: the exit code is 0 whatever the figures, non-zero only if the
benchmark itself could not run.

1. history: a coupon with 1,000,000 events (built directly with ``Coupon.redeem`` and
   ``save()``, snapshots every ``SNAPSHOT_INTERVAL`` events as the writer takes them) against a
   new coupon: latency of sequential ``CouponLedger.apply`` calls on each, caches warm,
   interleaved in random A/B order; p50, p99 and the ratio long/new.
2. restart: a brand-new CouponLedger per restart (empty caches), timing its first ``apply`` of
   the long coupon, of a new coupon and, for each ``--intervals`` N, of a coupon in the worst
   case of that snapshot interval (version 2N-1: N-1 events after its newest snapshot), each with
   the number of events read; and what taking the snapshots costs while writing, both through the
   library's ``save()`` (which re-reads the aggregate to snapshot it) and the way the batching
   writer does it (from the state in memory: one snapshot put per N events).
3. lag: ``coupon-ledger serve`` under ``wrk`` (64 connections, ``bench/wrk_apply.lua``, every
   request redeems one hot coupon with a fresh Idempotency-Key) while this process samples the
   head of the event log and the read model's tracking position every 50 ms; the lag of a sample
   is its time minus the first sampled time at which the head had reached the sample's tracking
   position (0 when the tracking position is at the head). Prints requests/s, events/s, max and
   p99 lag, and how long after the load the read model reached the head.
4. rss: ``coupon-ledger serve`` while ``wrk`` (``bench/wrk_create.lua``) creates ``--coupons``
   coupons over HTTP, progress every ~10 s; then the server's peak (VmHWM) and current RSS.

Database: DATABASE_URL if set, else an embedded PostgreSQL in a temporary folder; each step
group gets a database of its own on that server (dropped afterwards). Timing figures are
medians or percentiles over many samples, ratios are measured in the same run: the machine may
be shared.

Usage: python -m bench.capacity [--quick] [--steps history,restart,lag,rss] [--intervals 100,1000,10000]
       [--events 1000000] [--coupons 1000000] [--duration 15]
``--quick`` runs every step with tiny sizes (20,000 events, 2,000 coupons, 3 s of load) for a test.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import httpx
import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import get_topic

from api.database import apply_schema, eventsourcing_env
from bench.harness import (
    ServerProcess,
    Tenant,
    benchmark_server,
    create_ledger_retailer,
    ensure_wrk,
    fresh_database,
    ledger_server_command,
    machine_line,
    running,
)
from ledger.application import SNAPSHOT_INTERVAL, CouponLedger
from ledger.commands import CreateCoupon, Redeem
from ledger.domain import Coupon, Order

BENCH_DIR = Path(__file__).resolve().parent
APPLY_SCRIPT = BENCH_DIR / "wrk_apply.lua"
CREATE_SCRIPT = BENCH_DIR / "wrk_create.lua"
STEPS = ("history", "restart", "lag", "rss")
SUBTOTAL = Decimal("100.00")
PERCENT_10 = {"discount_type": "percentage", "discount_value": Decimal("10")}
APPLICATION_NAME = CouponLedger.name
# Events per save() while building histories. psycopg 3.3.9 in pipeline mode (the library's
# insert_events) hangs for good on one statement of about 1 MB or more, here about 2,500
# events; the batching writer never writes that much at once (at most 512 commands).
SAVE_CHUNK = 1_000
HEAD_AND_TRACKING = (
    "SELECT (SELECT coalesce(max(notification_id), 0) FROM ledger_events),"
    " (SELECT coalesce(max(notification_id), 0) FROM coupons_projection_tracking WHERE application_name = %s)"
)
L = TypeVar("L", bound=CouponLedger)


def log(message: str) -> None:
    print(f"[capacity] {message}", file=sys.stderr, flush=True)


# --- configuration --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    steps: tuple[str, ...]
    quick: bool
    prior_events: int  # version of the long coupon
    pairs: int  # interleaved long/new applies in step 1
    restarts: int
    intervals: tuple[int, ...]
    overhead_events: int  # events saved per sample when timing the snapshot overhead
    overhead_samples: int
    lag_seconds: int
    warmup_seconds: int
    sample_interval: float
    coupons: int
    connections: int
    wrk_threads: int
    progress_every: float


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, so that a test can run every step")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--intervals", help="snapshot intervals to compare (default 100,1000,10000; quick 100,1000)")
    parser.add_argument("--events", type=int, help="events of the long coupon (default 1000000; quick 20000)")
    parser.add_argument("--coupons", type=int, help="coupons to create in the rss step (default 1000000; quick 2000)")
    parser.add_argument("--duration", type=int, help="seconds of load in the lag step (default 15; quick 3)")
    parser.add_argument("--restarts", type=int, help="restarts in the restart step (default 7; quick 3)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--wrk-threads", type=int, default=2)
    args = parser.parse_args(argv)

    steps = tuple(part.strip() for part in args.steps.split(",") if part.strip())
    if not steps or any(step not in STEPS for step in steps):
        parser.error(f"--steps takes a comma-separated subset of {','.join(STEPS)}")
    quick = bool(args.quick)
    try:
        intervals = tuple(
            int(part) for part in (args.intervals or ("100,1000" if quick else "100,1000,10000")).split(",")
        )
    except ValueError:
        parser.error("--intervals takes comma-separated whole numbers")
    if not intervals or min(intervals) < 2:
        parser.error("every snapshot interval must be at least 2")
    prior_events = args.events if args.events is not None else (20_000 if quick else 1_000_000)
    if prior_events < 2:
        parser.error("--events must be at least 2")
    coupons = args.coupons if args.coupons is not None else (2_000 if quick else 1_000_000)
    if coupons < 1:
        parser.error("--coupons must be at least 1")
    return Config(
        steps=tuple(step for step in STEPS if step in steps),
        quick=quick,
        prior_events=prior_events,
        pairs=50 if quick else 300,
        restarts=args.restarts if args.restarts is not None else (3 if quick else 7),
        intervals=intervals,
        overhead_events=2_000 if quick else 10_000,
        overhead_samples=2 if quick else 5,
        lag_seconds=args.duration if args.duration is not None else (3 if quick else 15),
        warmup_seconds=1 if quick else 2,
        sample_interval=0.05,
        coupons=coupons,
        connections=args.connections,
        wrk_threads=args.wrk_threads,
        progress_every=2.0 if quick else 10.0,
    )


# --- report ---------------------------------------------------------------------------------------------


@dataclass
class Summary:
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, figure: str, measured: str, goal: str = "-") -> None:
        self.rows.append((figure, measured, goal))

    def render(self) -> str:
        width = max([len("figure"), *(len(row[0]) for row in self.rows)])
        lines = ["== summary ==", f"{'figure':<{width}} | {'measured':>12} | goal", "-" * (width + 26)]
        lines += [f"{figure:<{width}} | {measured:>12} | {goal}" for figure, measured, goal in self.rows]
        return "\n".join(lines)


def block(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def figure(label: str, value: float, unit: str = "", digits: int = 2) -> None:
    """One figure of a block: ``  label: value unit`` (labels never contain a colon)."""
    print(f"  {label}: {value:.{digits}f}{' ' + unit if unit else ''}", flush=True)


def note(text: str) -> None:
    print(f"  ({text})", flush=True)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


# --- database -------------------------------------------------------------------------------------------


def query_ints(url: str, sql: str, params: tuple[object, ...] = ()) -> tuple[int, ...]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return tuple(int(value or 0) for value in row)


def head_and_tracking(url: str) -> tuple[int, int]:
    head, tracked = query_ints(url, HEAD_AND_TRACKING, (APPLICATION_NAME,))
    return head, tracked


def wait_caught_up(url: str, timeout: float) -> float:
    """Seconds until the read model's tracking position reached the head of the log."""
    started = time.monotonic()
    while True:
        head, tracked = head_and_tracking(url)
        if tracked >= head:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"the read model did not reach the head in {timeout:.0f} s ({tracked} of {head})")
        time.sleep(0.05)


# --- ledgers and histories ------------------------------------------------------------------------------


class StoreLedger(CouponLedger):
    """Writes through the library's save() without snapshotting by itself, but with the snapshot
    store, so that the benchmark puts snapshots as the batching writer takes them: from the state
    in memory, with no re-reading (the writer then inserts them in its save's own statement, so
    the separate put measured here is an upper bound of its cost)."""

    name = CouponLedger.name
    is_snapshotting_enabled = True
    snapshotting_intervals = {}


def library_snapshotting(interval: int) -> type[CouponLedger]:
    """A CouponLedger whose save() snapshots coupons every ``interval`` versions (the library's
    way: each snapshot re-reads the coupon at that version from the store)."""

    class IntervalLedger(CouponLedger):
        name = CouponLedger.name
        snapshotting_intervals = {Coupon: interval}

    return IntervalLedger


def open_as(cls: type[L], url: str, pool_size: int = 2) -> L:
    ledger = cls(env=eventsourcing_env(url, pool_size=pool_size, max_overflow=pool_size))
    if isinstance(ledger.recorder, PostgresApplicationRecorder):
        ledger.recorder.datastore.register_type_adapters()
    return ledger


def create(builder: CouponLedger, retailer_id: UUID, code: str) -> Coupon:
    """A new coupon (percentage 10, no limits), read back to be grown with ``grow``."""
    created = builder.execute(
        CreateCoupon(retailer_id, code, {"discount_type": "percentage", "discount_value": Decimal("10")})
    )
    coupon: Coupon = builder.repository.get(created.id)
    return coupon


def put_snapshot(ledger: CouponLedger, coupon: Coupon, costs: list[float]) -> None:
    assert ledger.snapshots is not None
    started = time.perf_counter()
    ledger.snapshots.put([Coupon.Snapshot.take(coupon)])
    costs.append(time.perf_counter() - started)


def grow(
    ledger: CouponLedger,
    coupon: Coupon,
    version: int,
    snapshot_every: int,
    snapshot_costs: list[float],
    progress: bool = False,
) -> None:
    """Redeem ``coupon`` directly until it is at ``version``, saving every SAVE_CHUNK events and
    putting a snapshot at every multiple of ``snapshot_every``.

    These redemptions skip the Redemption aggregates that CouponLedger.apply records beside each
    one: that changes nothing about the coupon's history, which is what is measured here.
    """
    now = datetime.now(UTC)
    pending = 0
    last_report = time.monotonic()
    while coupon.version < version:
        coupon.redeem(uuid4(), SUBTOTAL, now, None)
        pending += 1
        at_snapshot = snapshot_every > 0 and coupon.version % snapshot_every == 0
        if pending >= SAVE_CHUNK or at_snapshot or coupon.version == version:
            ledger.save(coupon)
            pending = 0
            if at_snapshot:
                put_snapshot(ledger, coupon, snapshot_costs)
            if progress and time.monotonic() - last_report >= 10:
                last_report = time.monotonic()
                log(f"building: version {coupon.version:,} of {version:,}")


def stored_versions(url: str, coupon_id: UUID) -> tuple[int, int, int]:
    """(version, newest snapshot's version or 0, number of snapshots) of a coupon."""
    version, snapshot_version, snapshots = query_ints(
        url,
        "SELECT (SELECT max(originator_version) FROM ledger_events WHERE originator_id = %s),"
        " (SELECT coalesce(max(originator_version), 0) FROM ledger_snapshots WHERE originator_id = %s),"
        " (SELECT count(*) FROM ledger_snapshots WHERE originator_id = %s)",
        (coupon_id, coupon_id, coupon_id),
    )
    return version, snapshot_version, snapshots


def events_read_on_first_load(url: str, coupon_id: UUID) -> int:
    """What a reader with an empty cache reads: the newest snapshot, then the events after it."""
    version, snapshot_version, _ = stored_versions(url, coupon_id)
    return version - snapshot_version


@dataclass
class Histories:
    """The coupons of steps 1 and 2, in one database, written by one builder ledger."""

    url: str
    config: Config
    run_id: str
    builder: StoreLedger
    retailer_id: UUID = field(default_factory=uuid4)
    snapshot_costs: list[float] = field(default_factory=list)
    long_code: str = ""
    long_id: UUID | None = None

    def code(self, name: str) -> str:
        return f"{name}-{self.run_id}"

    def new_coupon(self, name: str) -> Coupon:
        return create(self.builder, self.retailer_id, self.code(name))

    def long_coupon(self) -> tuple[str, UUID]:
        """The coupon with ``prior_events`` events, built on first use."""
        if self.long_id is None:
            target = self.config.prior_events
            log(f"building a coupon with {target:,} events")
            coupon = self.new_coupon("LONG")
            started = time.perf_counter()
            grow(self.builder, coupon, target, SNAPSHOT_INTERVAL, self.snapshot_costs, progress=True)
            seconds = time.perf_counter() - started
            version, snapshot_version, snapshots = stored_versions(self.url, coupon.id)
            block(f"long coupon: {version:,} events")
            figure("events", version, digits=0)
            figure("build time", seconds, "s", 1)
            figure("build rate", (version - 1) / seconds, "events/s", 0)
            figure("snapshots in ledger_snapshots", snapshots, digits=0)
            figure("newest snapshot version", snapshot_version, digits=0)
            note(
                f"built with Coupon.redeem and save() every {SAVE_CHUNK:,} events, a snapshot put every "
                f"{SNAPSHOT_INTERVAL:,} (SNAPSHOT_INTERVAL) from the state in memory, as the batching writer does"
            )
            self.long_code, self.long_id = coupon.code, coupon.id
        return self.long_code, self.long_id


# --- step 1: a long history -----------------------------------------------------------------------------


def step_history(histories: Histories, summary: Summary) -> None:
    config = histories.config
    long_code, _ = histories.long_coupon()
    new_code = histories.new_coupon("NEW").code
    ledger = open_as(CouponLedger, histories.url)  # a fresh writer cache, nothing left from building
    latencies: dict[str, list[float]] = {long_code: [], new_code: []}
    try:
        for code in (long_code, new_code):  # warm the cache: the first apply loads the coupon
            for n in range(3):
                ledger.execute(
                    Redeem(histories.retailer_id, code, Order.of(SUBTOTAL), idempotency_key=f"warm-{code}-{n}")
                )
        for n in range(config.pairs):
            order = [long_code, new_code]
            random.shuffle(order)
            for code in order:
                started = time.perf_counter()
                ledger.execute(Redeem(histories.retailer_id, code, Order.of(SUBTOTAL), idempotency_key=f"h-{code}-{n}"))
                latencies[code].append((time.perf_counter() - started) * 1000)
    finally:
        ledger.close()
    long_ms, new_ms = latencies[long_code], latencies[new_code]
    p50_ratio = ratio(statistics.median(long_ms), statistics.median(new_ms))
    p99_ratio = ratio(percentile(long_ms, 0.99), percentile(new_ms, 0.99))
    block(f"1. history: redemption latency, {config.prior_events:,}-event coupon vs new coupon")
    note(
        f"{config.pairs} sequential CouponLedger.apply calls on each, in random A/B order, "
        "caches warm, an Idempotency-Key each"
    )
    figure("long coupon p50", statistics.median(long_ms), "ms", 3)
    figure("long coupon p99", percentile(long_ms, 0.99), "ms", 3)
    figure("new coupon p50", statistics.median(new_ms), "ms", 3)
    figure("new coupon p99", percentile(new_ms, 0.99), "ms", 3)
    figure("p50 ratio long/new", p50_ratio)
    figure("p99 ratio long/new", p99_ratio)
    summary.add("long/new redemption latency p50 ratio", f"{p50_ratio:.2f}", "<= 1.2")
    summary.add("long/new redemption latency p99 ratio", f"{p99_ratio:.2f}")


# --- step 2: first load after a restart, and the snapshot interval -----------------------------------------


@dataclass
class FirstLoads:
    ms: list[float] = field(default_factory=list)
    events_read: list[int] = field(default_factory=list)


def step_restart(histories: Histories, summary: Summary) -> None:
    config = histories.config
    long_code, long_id = histories.long_coupon()
    log("restart: building the worst-case coupon of every interval")
    started = time.perf_counter()
    warm = histories.new_coupon("WARM")
    targets: list[dict[str, tuple[str, UUID]]] = []  # per restart: label -> (code, id)
    for restart in range(config.restarts):
        chosen = {"long": (long_code, long_id)}
        fresh = histories.new_coupon(f"NEW{restart}")
        chosen["new"] = (fresh.code, fresh.id)
        for interval in config.intervals:
            # Worst case of interval N: version k*N + N-1, the newest snapshot at k*N (k = 1 here).
            coupon = histories.new_coupon(f"W{interval}-{restart}")
            grow(histories.builder, coupon, 2 * interval - 1, interval, histories.snapshot_costs)
            chosen[f"interval {interval}"] = (coupon.code, coupon.id)
        targets.append(chosen)
    log(f"restart: built in {time.perf_counter() - started:.1f} s")

    loads: dict[str, FirstLoads] = {}
    for chosen in targets:
        ledger = open_as(CouponLedger, histories.url, pool_size=1)  # a restart: every cache empty
        try:
            # The first apply of a process also opens its connection and prepares its statements:
            # done on another coupon, so that what is timed is loading each coupon.
            ledger.execute(Redeem(histories.retailer_id, warm.code, Order.of(SUBTOTAL)))
            labels = list(chosen)
            random.shuffle(labels)
            for label in labels:
                code, coupon_id = chosen[label]
                events_read = events_read_on_first_load(histories.url, coupon_id)
                began = time.perf_counter()
                ledger.execute(Redeem(histories.retailer_id, code, Order.of(SUBTOTAL), idempotency_key=f"r-{uuid4()}"))
                loads.setdefault(label, FirstLoads()).ms.append((time.perf_counter() - began) * 1000)
                loads[label].events_read.append(events_read)
        finally:
            ledger.close()

    def median_ms(label: str) -> float:
        return statistics.median(loads[label].ms)

    block("2. restart: the first apply of a coupon by a brand-new CouponLedger")
    note(
        f"median of {config.restarts} restarts, each a new CouponLedger whose first apply (another coupon) "
        "opened its connection; events read = version - newest snapshot version"
    )
    figure("first apply long coupon", median_ms("long"), "ms", 2)
    figure("events read long coupon", statistics.median(loads["long"].events_read), digits=0)
    figure("long coupon version", stored_versions(histories.url, long_id)[0], digits=0)
    figure("first apply new coupon", median_ms("new"), "ms", 2)
    figure("events read new coupon", statistics.median(loads["new"].events_read), digits=0)
    first_ratio = ratio(median_ms("long"), median_ms("new"))
    figure("first apply ratio long/new", first_ratio)
    summary.add("first apply after restart, long coupon (ms)", f"{median_ms('long'):.2f}")
    summary.add("first apply after restart, ratio long/new", f"{first_ratio:.2f}")

    overheads = measure_snapshot_overhead(histories)
    snapshot_us = statistics.median(histories.snapshot_costs) * 1e6
    print(
        "\n  snapshot interval table (first apply: worst case, N-1 events after the newest snapshot;"
        f" overhead: saving {config.overhead_events:,} events in saves of {SAVE_CHUNK:,},"
        f" median of {config.overhead_samples} samples with and without)"
    )
    header = (
        f"  {'interval':>9} | {'events read':>11} | {'first apply ms':>14} | {'/ new coupon':>12} |"
        f" {'library save() +us/event':>24} | {'writer +us/event':>16} | {'snapshots per 1M events':>23}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for interval in config.intervals:
        label = f"interval {interval}"
        print(
            f"  {interval:>9} | {statistics.median(loads[label].events_read):>11.0f} |"
            f" {median_ms(label):>14.2f} | {ratio(median_ms(label), median_ms('new')):>12.2f} |"
            f" {overheads[interval]:>24.2f} | {snapshot_us / interval:>16.3f} | {1_000_000 // interval:>23,}"
        )
    note(
        f"writer +us/event = one snapshot taken from memory and put ({snapshot_us:.0f} us, median of "
        f"{len(histories.snapshot_costs)}) per interval events, an upper bound for the writer, which inserts it "
        "in the statement of its save; library save() "
        "+us/event = the library's own snapshotting in save(), which re-reads the coupon for each snapshot"
    )
    for interval in config.intervals:
        figure(f"interval {interval} first apply", median_ms(f"interval {interval}"), "ms", 2)
        figure(f"interval {interval} library save overhead", overheads[interval], "us/event", 2)
        figure(f"interval {interval} writer snapshot overhead", snapshot_us / interval, "us/event", 3)


def measure_snapshot_overhead(histories: Histories) -> dict[int, float]:
    """Per interval: microseconds per event that the library's snapshotting adds to save()."""
    config = histories.config
    result: dict[int, float] = {}
    for interval in config.intervals:
        snapshotting = open_as(library_snapshotting(interval), histories.url)
        coupons = {
            "with": histories.new_coupon(f"OVW{interval}"),
            "without": histories.new_coupon(f"OVO{interval}"),
        }
        seconds: dict[str, list[float]] = {"with": [], "without": []}
        try:
            for _ in range(config.overhead_samples):
                variants = ["with", "without"]
                random.shuffle(variants)
                for variant in variants:
                    ledger: CouponLedger = snapshotting if variant == "with" else histories.builder
                    seconds[variant].append(timed_saves(ledger, coupons[variant], config.overhead_events))
        finally:
            snapshotting.close()
        extra = statistics.median(seconds["with"]) - statistics.median(seconds["without"])
        result[interval] = extra / config.overhead_events * 1e6
    return result


def timed_saves(ledger: CouponLedger, coupon: Coupon, events: int) -> float:
    """Seconds spent in save() writing ``events`` more redemptions of ``coupon``, SAVE_CHUNK at a time."""
    now = datetime.now(UTC)
    spent = 0.0
    remaining = events
    while remaining > 0:
        for _ in range(min(SAVE_CHUNK, remaining)):
            coupon.redeem(uuid4(), SUBTOTAL, now, None)
        remaining -= SAVE_CHUNK
        started = time.perf_counter()
        ledger.save(coupon)
        spent += time.perf_counter() - started
    return spent


# --- step 3: projection lag under peak load -------------------------------------------------------------


class Sampler(threading.Thread):
    """Samples (time, head, tracking position) every ``interval`` seconds on its own connection."""

    def __init__(self, url: str, interval: float) -> None:
        super().__init__(name="capacity-sampler", daemon=True)
        self.url = url
        self.interval = interval
        self.samples: list[tuple[float, int, int]] = []
        self.error: BaseException | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                due = time.monotonic()
                while not self._stopping.is_set():
                    before = time.monotonic()
                    row = conn.execute(HEAD_AND_TRACKING, (APPLICATION_NAME,)).fetchone()
                    assert row is not None
                    self.samples.append(((before + time.monotonic()) / 2, int(row[0]), int(row[1])))
                    due += self.interval
                    self._stopping.wait(max(0.0, due - time.monotonic()))
        except BaseException as error:
            self.error = error

    def stop(self) -> list[tuple[float, int, int]]:
        self._stopping.set()
        self.join(10)
        if self.error is not None:
            raise RuntimeError(f"sampling failed: {self.error}") from self.error
        return list(self.samples)


def lags(samples: list[tuple[float, int, int]]) -> list[float]:
    """Per sample, seconds since the head first reached the sample's tracking position
    (0 when the tracking position is at the head)."""
    result = []
    first_at: list[tuple[int, float]] = []  # (head, first sampled time with that head or more), heads rising
    for at, head, tracked in samples:
        if not first_at or head > first_at[-1][0]:
            first_at.append((head, at))
        if tracked >= head:
            result.append(0.0)
            continue
        reached = next(time_ for head_, time_ in first_at if head_ >= tracked)
        result.append(at - reached)
    return result


def run_wrk(command: list[str], timeout: float, mark: str) -> dict[str, Any]:
    finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [line for line in finished.stdout.splitlines() if line.startswith(mark)]
    if finished.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({finished.returncode}):\n{finished.stdout}{finished.stderr}")
    printed: dict[str, Any] = json.loads(lines[-1][len(mark) :])
    return printed


def wrk_apply(wrk: str, base_url: str, tenant: Tenant, config: Config, seconds: int, run_id: str) -> dict[str, Any]:
    command = [
        wrk,
        f"-t{config.wrk_threads}",
        f"-c{config.connections}",
        f"-d{seconds}s",
        "--timeout=10s",
        "--latency",
        "-s",
        str(APPLY_SCRIPT),
        f"{base_url}/v1/coupons/apply",
        "--",
        *(tenant.api_key, "hot", "HOT1", "U", "1", run_id),
    ]
    return run_wrk(command, seconds + 70, "BENCH_RESULT ")


def step_lag(url: str, config: Config, wrk: str, run_id: str, log_dir: Path, summary: Summary) -> None:
    tenant = create_ledger_retailer(url)
    with running("capacity-lag", ledger_server_command(), url, log_dir) as server:
        body = {"code": "HOT1", "discount_type": "percentage", "discount_value": "10"}
        headers = {"Authorization": f"Bearer {tenant.api_key}"}
        created = httpx.post(f"{server.base_url}/v1/coupons", json=body, headers=headers, timeout=30)
        if created.status_code != 201:
            raise RuntimeError(f"creating HOT1: {created.status_code} {created.text}")
        wrk_apply(wrk, server.base_url, tenant, config, config.warmup_seconds, f"{run_id}-warm")
        wait_caught_up(url, 300)
        sampler = Sampler(url, config.sample_interval)
        sampler.start()
        time.sleep(5 * config.sample_interval)  # a few samples before the load
        load_started = time.monotonic()
        result = wrk_apply(wrk, server.base_url, tenant, config, config.lag_seconds, run_id)
        load_ended = time.monotonic()
        caught_up_at = math.inf
        deadline = load_ended + 120
        while time.monotonic() < deadline:
            time.sleep(0.1)
            after = [s for s in sampler.samples if s[0] > load_ended]
            if not after:
                continue
            final_head = after[-1][1]
            steady = [s for s in after if s[1] == final_head]
            if after[-1][2] >= final_head and steady[-1][0] - steady[0][0] >= 0.5:
                caught_up_at = next(s[0] for s in after if s[2] >= final_head)
                break
        samples = sampler.stop()
    until_caught_up = [s for s in samples if s[0] <= caught_up_at]
    during = [s for s in until_caught_up if s[0] >= load_started]
    before = [s for s in samples if s[0] < load_started]
    head_before = before[-1][1] if before else samples[0][1]
    head_after = samples[-1][1]
    wrk_seconds = float(result["seconds"])
    ok = int(result["ok"])
    # The samples before the load only tell when the head reached each position.
    lag_ms = [lag * 1000 for lag in lags(until_caught_up)[len(until_caught_up) - len(during) :]]
    catch_up_ms = (caught_up_at - load_ended) * 1000
    behind = max((head - tracked for _, head, tracked in during), default=0)

    block("3. lag: the coupons read model behind the event log at peak write rate")
    note(
        f"coupon-ledger serve, wrk {config.connections} connections {config.wrk_threads} threads for "
        f"{config.lag_seconds} s on POST /v1/coupons/apply (one hot coupon, a fresh Idempotency-Key each), "
        f"after a {config.warmup_seconds} s warm-up; {len(during)} samples every "
        f"{config.sample_interval * 1000:.0f} ms"
    )
    figure("requests per second", ok / wrk_seconds, "req/s", 1)
    figure("non-2xx responses", float(result["non2xx"]), digits=0)
    figure("events per second", (head_after - head_before) / wrk_seconds, "events/s", 1)
    figure("request p50 latency", float(result["p50_ms"]), "ms", 2)
    figure("request p99 latency", float(result["p99_ms"]), "ms", 2)
    figure("max lag", max(lag_ms), "ms", 1)
    figure("p99 lag", percentile(lag_ms, 0.99), "ms", 1)
    figure("p50 lag", percentile(lag_ms, 0.50), "ms", 1)
    figure("max events behind", behind, digits=0)
    figure("catch-up after the load", catch_up_ms, "ms", 1)
    note(f"lag resolution: one sample ({config.sample_interval * 1000:.0f} ms)")
    summary.add("requests/s at peak (apply, one hot coupon)", f"{ok / wrk_seconds:.0f}")
    summary.add("projection lag at peak, max (ms)", f"{max(lag_ms):.0f}", "< 1000")
    summary.add("projection lag at peak, p99 (ms)", f"{percentile(lag_ms, 0.99):.0f}", "< 1000")
    summary.add("read model at head after the load (ms)", f"{catch_up_ms:.0f}", "< 1000")


# --- step 4: server memory after a million coupons ------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """The process and its descendants, from /proc."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += process_tree(int(child))
    return found


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB (empty if it is gone)."""
    result = {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            result[key] = int(value.split()[0]) / 1024
    return result


def tree_memory_mb(pid: int) -> tuple[float, float, int]:
    """(current RSS, peak RSS, processes) summed over the process and its children."""
    memories = [memory_mb(p) for p in process_tree(pid)]
    return (
        sum(m.get("VmRSS", 0.0) for m in memories),
        sum(m.get("VmHWM", 0.0) for m in memories),
        len(memories),
    )


def watch_creation(
    process: subprocess.Popen[str], server: ServerProcess, url: str, head_start: int, wanted: int, config: Config
) -> int:
    """Print progress until ``wanted`` coupons exist, then interrupt wrk (whose threads have stopped
    by then, but which sleeps for its whole -d before it exits); return the count so far."""
    started = last_time = last_report = time.monotonic()
    last_count = 0
    while process.poll() is None:
        time.sleep(0.25)
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode}:\n{server.log_tail()}")
        now = time.monotonic()
        count = head_and_tracking(url)[0] - head_start
        if count >= wanted:
            time.sleep(1.0)  # requests in flight when the threads stopped
            process.send_signal(signal.SIGINT)  # wrk then prints its results and exits
            return head_and_tracking(url)[0] - head_start
        if now - last_report >= config.progress_every:
            rss, _, _ = tree_memory_mb(server.process.pid)
            print(
                f"  progress: {count:,} created in {now - started:.0f} s,"
                f" {(count - last_count) / (now - last_time):.0f}/s, server RSS {rss:.0f} MB",
                flush=True,
            )
            last_time = last_report = now
            last_count = count
    return head_and_tracking(url)[0] - head_start


def step_rss(url: str, config: Config, wrk: str, run_id: str, log_dir: Path, summary: Summary) -> None:
    tenant = create_ledger_retailer(url)
    wanted = config.coupons
    with running("capacity-rss", ledger_server_command(), url, log_dir) as server:
        pid = server.process.pid
        rss_start, _, _ = tree_memory_mb(pid)
        head_start, _ = head_and_tracking(url)
        per_thread = math.ceil(wanted / config.wrk_threads)
        safety_seconds = max(120, wanted // 100)  # wrk's -d: only a safety net, the threads stop themselves
        command = [
            wrk,
            f"-t{config.wrk_threads}",
            f"-c{config.connections}",
            f"-d{safety_seconds}s",
            "--timeout=30s",
            "--latency",
            "-s",
            str(CREATE_SCRIPT),
            f"{server.base_url}/v1/coupons",
            "--",
            tenant.api_key,
            run_id,
            str(per_thread),
        ]
        block(f"4. rss: coupon-ledger serve while {wanted:,} coupons are created over HTTP")
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            created_so_far = watch_creation(process, server, url, head_start, per_thread * config.wrk_threads, config)
            log(f"rss: {created_so_far:,} created, stopping wrk")
            stdout, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        load_seconds = time.monotonic() - started
        lines = [line for line in stdout.splitlines() if line.startswith("CREATE_RESULT ")]
        if process.returncode != 0 or not lines:
            raise RuntimeError(f"wrk failed ({process.returncode}):\n{stdout}{stderr}")
        result = json.loads(lines[-1][len("CREATE_RESULT ") :])
        rss_loaded, _, _ = tree_memory_mb(pid)
        catch_up = wait_caught_up(url, max(300.0, wanted / 200))
        (created,) = query_ints(
            url,
            "SELECT count(*) FROM ledger_events WHERE notification_id > %s AND topic = %s",
            (head_start, get_topic(Coupon.Created)),
        )
        rss_now, rss_peak, processes = tree_memory_mb(pid)
    rate = created / load_seconds
    figure("coupons created", created, digits=0)
    figure("creation time", load_seconds, "s", 1)
    figure("creation rate", rate, "coupons/s", 1)
    figure("non-201 responses", float(result["failed"]), digits=0)
    figure("request p99 latency", float(result["p99_ms"]), "ms", 2)
    figure("read model caught up after", catch_up, "s", 2)
    figure("server RSS at start", rss_start, "MB", 1)
    figure("server RSS at end of load", rss_loaded, "MB", 1)
    figure("server RSS now", rss_now, "MB", 1)
    figure("server peak RSS", rss_peak, "MB", 1)
    note(
        f"RSS of the server process and its children ({processes} process(es)), from /proc/PID/status "
        "VmRSS and VmHWM; coupons counted as Coupon.Created events in the database"
    )
    summary.add(f"server peak RSS after {created:,} coupons (MB)", f"{rss_peak:.0f}", "< 500")
    summary.add("server RSS now (MB)", f"{rss_now:.0f}")
    summary.add("coupons created over HTTP per second", f"{rate:.0f}")


# --- the command ------------------------------------------------------------------------------------------


def run(config: Config) -> Summary:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    wrk = ensure_wrk() if {"lag", "rss"} & set(config.steps) else ""
    run_id = uuid4().hex[:8].upper()
    log_dir = Path(tempfile.mkdtemp(prefix="coupon-capacity-logs-"))
    log(f"server logs in {log_dir}")
    summary = Summary()
    started = time.perf_counter()
    with benchmark_server("capacity") as (server_url, where):
        print("coupon-ledger capacity benchmark", flush=True)
        print(machine_line(server_url, where, wrk), flush=True)
        print(
            f"steps: {','.join(config.steps)}; long coupon {config.prior_events:,} events; intervals "
            f"{','.join(map(str, config.intervals))}; {config.lag_seconds} s of load; {config.coupons:,} coupons"
            + ("; QUICK" if config.quick else ""),
            flush=True,
        )
        if "history" in config.steps or "restart" in config.steps:
            with fresh_database(server_url, f"capacity_history_{run_id.lower()}") as url:
                apply_schema(url)
                builder = open_as(StoreLedger, url)
                try:
                    histories = Histories(url, config, run_id, builder)
                    if "history" in config.steps:
                        step_history(histories, summary)
                    if "restart" in config.steps:
                        step_restart(histories, summary)
                finally:
                    builder.close()
        if "lag" in config.steps:
            with fresh_database(server_url, f"capacity_lag_{run_id.lower()}") as url:
                apply_schema(url)
                step_lag(url, config, wrk, run_id, log_dir, summary)
        if "rss" in config.steps:
            with fresh_database(server_url, f"capacity_rss_{run_id.lower()}") as url:
                apply_schema(url)
                step_rss(url, config, wrk, run_id, log_dir, summary)
    shutil.rmtree(log_dir, ignore_errors=True)
    print(f"\nwall time: {time.perf_counter() - started:.0f} s", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    summary = run(parse_args(argv))
    print("\n" + summary.render(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
