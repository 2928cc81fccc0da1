"""python -m bench.write_path: redemptions per second with the hash chain on, against a baseline.

Runs the harness's ledger side on the hot coupon (``python -m bench.harness --sides ledger
--workloads hot --levels LEVEL``, a fresh embedded PostgreSQL each run) in this checkout and, with
``--against DIR``, in another checkout (the commit before the chain, say) with its own Python,
alternately, ``--rounds`` times per level: the machine is shared and its speed drifts by more than
the difference measured, so only runs made in the same minutes are compared. Prints every run, each
side's mean and the difference, and the last harness figures the README recorded before the chain
(measured on another day: a reference, not a baseline).

It reports; it does not judge: exit 0 whatever the figures.

Usage: python -m bench.write_path --against ../before --against-python ../before/.venv/bin/python
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import load_average

# The README's harness table from before the hash chain (2026-11-22, commit 64e4247, three runs),
# and the engine level's one run of 2026-12-04 on the commit before the chain (5314e37): req/s.
LAST_RECORDED = {
    "engine": "4,413 / 4,649 / 4,242 (2026-11-22); 4,225 (2026-12-04)",
    "http": "2,415 / 3,074 / 2,219 (2026-11-22); 2,712 to 3,096 (2026-12-04)",
}
HERE = Path(__file__).resolve().parent.parent


def orphaned_benchmark_servers() -> list[int]:
    """Embedded PostgreSQL servers of finished benchmark runs: a postmaster whose data folder, a
    harness's temporary ``coupon-bench-*`` folder, is gone. A harness from before its stop was
    fixed (the baseline's, say) leaves its server running until the server notices, 10 to 60 s
    later, and that server's last work would share the machine with the next run."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv[0].endswith(b"/bin/postgres") or b"-D" not in argv[:-1]:
            continue
        data = argv[argv.index(b"-D") + 1].decode(errors="replace")
        if "/coupon-bench-" in data and not Path(data).exists():
            found.append(int(entry.name))
    return found


def stop_orphaned_benchmark_servers(timeout: float = 30.0) -> None:
    """Stop them (immediate shutdown: their data is deleted already) and wait until they are gone."""
    pids = orphaned_benchmark_servers()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # gone by itself meanwhile
            os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if is_running(pid)]
        time.sleep(0.1)


def is_running(pid: int) -> bool:
    """Not exited (a zombie has exited: only its parent's wait is missing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def run_harness(tree: Path, python: str, level: str, seconds: int) -> float | None:
    """The ledger's req/s on the hot coupon at one level, run in ``tree``; None if it failed."""
    stop_orphaned_benchmark_servers()
    command = [python, "-m", "bench.harness", "--sides", "ledger", "--workloads", "hot", "--levels", level]
    if level == "engine":
        command += ["--duration", str(seconds), "--warmup", "3"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "ledger":
            try:
                return float(fields[1])
            except ValueError:
                return None
    print(f"  the harness failed in {tree}: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.write_path", description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="engine,http", help="comma-separated: engine,http (default both)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per side and level (default 3)")
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds of an engine run (default 10)")
    parser.add_argument("--against", type=Path, help="another checkout to run alternately (the baseline)")
    parser.add_argument("--against-python", default=sys.executable, help="the baseline checkout's Python")
    args = parser.parse_args(argv)
    sides = [("this checkout", HERE, sys.executable)]
    if args.against is not None:
        sides.insert(0, ("baseline", args.against.resolve(), args.against_python))
    for level in [name.strip() for name in args.levels.split(",") if name.strip()]:
        figures: dict[str, list[float]] = {name: [] for name, _, _ in sides}
        print(f"{level} hot, ledger side, {args.rounds} round(s), alternately:")
        for _ in range(args.rounds):
            for name, tree, python in sides:
                rate = run_harness(tree, python, level, args.seconds)
                print(f"  {name:14s} {rate if rate is not None else 'failed':>10} req/s  (load {load_average()})")
                if rate is not None:
                    figures[name].append(rate)
        means = {name: statistics.mean(rates) for name, rates in figures.items() if rates}
        for name, mean in means.items():
            print(f"  mean {name:14s} {mean:10,.0f} req/s")
        if len(means) == 2:
            change = means["this checkout"] / means["baseline"] - 1
            print(f"  difference: {change:+.1%} against the baseline (the goal: within 10 %)")
        print(f"  last recorded before the chain (README): {LAST_RECORDED.get(level, '-')} req/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
