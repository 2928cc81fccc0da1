"""python -m bench.cpu_split: where the CPU of a redemption goes over HTTP, per process and per thread.

Runs `coupon-ledger serve` as bench/harness.py's HTTP level does (DATABASE_URL, else an embedded
PostgreSQL in a temporary folder; its hot coupon; ``wrk`` with 64 connections posting to
/v1/coupons/apply), then ``--rounds`` measured runs of ``--seconds`` each. For every run it prints
the redemptions per second and the CPU time (user + system, from /proc) per acknowledged redemption
of: the server process, its `project` child, PostgreSQL (all of the server's processes), and each
thread of the server and of the child by its id (Python 3.11 gives its threads no names the kernel
sees: `py-spy dump --pid PID` names them). On two shared
cores these add up to the machine: a redemption that costs less here is what lets the server go
faster. It reports; it does not judge.

To compare two checkouts, run it in each (``PYTHONPATH=<checkout>`` with that checkout's Python),
alternately, in the same minutes.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from bench import harness

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(stat_path: str) -> float:
    """User + system CPU seconds of a process or thread, from its /proc stat file (0 if gone)."""
    try:
        fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def children_of(pid: int) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    yield int(entry.name)
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue


def thread_names(pid: int) -> dict[int, str]:
    """Thread id -> the kernel's name for the thread (the process's, unless the thread set one)."""
    names = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            names[int(task.name)] = (task / "comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError):
            continue
    return names


def postmaster_of(url: str) -> int:
    """The postmaster's pid: the parent of this session's backend, read while the backend lives."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        return int(Path(f"/proc/{row[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])


def snapshot(server: int, child: int | None, postmaster: int) -> dict[str, float]:
    """CPU seconds so far of the server, its child, PostgreSQL and each of the first two's threads."""
    figures = {"server": cpu_seconds(f"/proc/{server}/stat"), "postgres": cpu_seconds(f"/proc/{postmaster}/stat")}
    figures["postgres"] += sum(cpu_seconds(f"/proc/{pid}/stat") for pid in children_of(postmaster))
    for name, pid in (("server", server), ("child", child)):
        if pid is None:
            continue
        if name == "child":
            figures["child"] = cpu_seconds(f"/proc/{pid}/stat")
        for tid, thread in thread_names(pid).items():
            figures[f"{name} thread {tid} {thread}"] = cpu_seconds(f"/proc/{pid}/task/{tid}/stat")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_split", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="measured runs (default 2)")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of each run (default 10)")
    args = parser.parse_args(argv)
    config = harness.parse_args(["--sides", "ledger", "--workloads", "hot", "--levels", "http"])
    coupons = harness.Coupons(config.coupons)
    wrk = harness.ensure_wrk()
    with (
        harness.benchmark_server("cpu-split") as (server_url, where),
        harness.fresh_database(server_url, "cpu_split") as url,
    ):
        log_dir = Path(tempfile.mkdtemp(prefix="cpu-split-"))
        tenant = harness.set_up_ledger(url, config, coupons, log_dir)
        with harness.running("cpu-split", harness.ledger_server_command(), url, log_dir) as server:
            harness.wait_for_read_model(server, tenant)
            target = f"{server.base_url}/v1/coupons/apply"
            codes = [coupons.hot("http"), harness.UNIFORM_PREFIX, str(coupons.count)]
            warmup = math.ceil(harness.warmup_seconds("hot", coupons, config.http_warmup, rate=800))
            harness.run_wrk(wrk, target, warmup, config, [tenant.api_key, "hot", *codes, "cpu-split-warmup"])
            pid = server.process.pid
            child = next(children_of(pid), None)
            postmaster = postmaster_of(url)
            print(f"PostgreSQL {where}; server {pid}, its child {child}, PostgreSQL {postmaster}")
            for round_ in range(1, args.rounds + 1):
                before, started = snapshot(pid, child, postmaster), time.monotonic()
                run = harness.run_wrk(
                    wrk, target, args.seconds, config, [tenant.api_key, "hot", *codes, f"cpu-split-{round_}"]
                )
                after, elapsed = snapshot(pid, child, postmaster), time.monotonic() - started
                used = {name: after[name] - before.get(name, 0.0) for name in after}
                per = {name: seconds / max(run.ok, 1) * 1e6 for name, seconds in used.items()}
                print(
                    f"run {round_}: {run.ok_per_s:,.0f} req/s; µs of CPU per redemption: server"
                    f" {per['server']:.0f}, child {per.get('child', 0):.0f}, PostgreSQL {per['postgres']:.0f}"
                    f" (share of a core: {used['server'] / elapsed:.0%}, {used.get('child', 0) / elapsed:.0%},"
                    f" {used['postgres'] / elapsed:.0%})"
                )
                for name in sorted((n for n in per if " thread " in n), key=lambda n: -per[n]):
                    if per[name] >= 1:
                        print(f"  {name}: {per[name]:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
