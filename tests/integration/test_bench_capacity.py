"""`python -m bench.capacity --quick` runs end to end and every step prints its block of figures.

Only the shape of the report is checked (blocks, labelled figures that are finite numbers, the
summary): never a timing, a ratio or a goal.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FIGURE = re.compile(r"^  (?P<label>[^:()]+): (?P<value>\S+)(?: .*)?$")
TABLE_ROW = re.compile(r"^\s+(\d+) \|\s+(\d+) \|\s+([\d.]+) \|\s+([\d.]+) \|\s+(-?[\d.]+) \|\s+([\d.]+) \|\s+[\d,]+$")

# Per step: its block's title and the figures it must print, with whether each must be > 0
# (else >= 0: a lag or a catch-up time may be zero at the sampling resolution; an overhead
# measured as a difference of two timings may come out negative on a busy machine).
STEPS: dict[str, tuple[str, dict[str, str]]] = {
    "history": (
        "== 1. history:",
        {
            "long coupon p50": "positive",
            "long coupon p99": "positive",
            "new coupon p50": "positive",
            "new coupon p99": "positive",
            "p50 ratio long/new": "positive",
            "p99 ratio long/new": "positive",
        },
    ),
    "restart": (
        "== 2. restart:",
        {
            "first apply long coupon": "positive",
            "events read long coupon": "positive",
            "first apply new coupon": "positive",
            "events read new coupon": "positive",
            "first apply ratio long/new": "positive",
            "interval 100 first apply": "positive",
            "interval 1000 first apply": "positive",
            "interval 100 library save overhead": "any",
            "interval 1000 library save overhead": "any",
            "interval 100 writer snapshot overhead": "positive",
            "interval 1000 writer snapshot overhead": "positive",
        },
    ),
    "lag": (
        "== 3. lag:",
        {
            "requests per second": "positive",
            "events per second": "positive",
            "max lag": "non-negative",
            "p99 lag": "non-negative",
            "catch-up after the load": "non-negative",
        },
    ),
    "rss": (
        "== 4. rss:",
        {
            "coupons created": "positive",
            "creation rate": "positive",
            "server peak RSS": "positive",
            "server RSS now": "positive",
        },
    ),
}


SMALLER = ("--events", "5000", "--coupons", "500", "--duration", "1")


def wrk_can_be_had() -> bool:
    """wrk is installed, or the benchmark may install it (root)."""
    return shutil.which("wrk") is not None or os.geteuid() == 0


def blocks(report: str) -> dict[str, dict[str, str]]:
    """Block title line -> label -> printed value, for every ``  label: value`` line of each block."""
    found: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in report.splitlines():
        if line.startswith("== "):
            current = found.setdefault(line, {})
        elif current is not None and (match := FIGURE.match(line)):
            current[match["label"]] = match["value"]
    return found


def test_quick_run_prints_every_step_with_finite_figures(database_url: str) -> None:
    steps = ["history", "restart", "lag", "rss"] if wrk_can_be_had() else ["history", "restart"]
    env = {k: v for k, v in os.environ.items() if not k.endswith("PERSISTENCE_MODULE")}
    env["DATABASE_URL"] = database_url

    finished = subprocess.run(
        # Smaller than --quick alone (20,000 events, 2,000 coupons, 3 s of load): every step still runs
        # with every interval, and prints every figure.
        [sys.executable, "-m", "bench.capacity", "--quick", "--steps", ",".join(steps), *SMALLER],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard, not a timing assertion
        check=False,
    )

    output = f"stdout:\n{finished.stdout}\nstderr:\n{finished.stderr}"
    assert finished.returncode == 0, output
    found = blocks(finished.stdout)
    for step in steps:
        title, wanted = STEPS[step]
        matching = [figures for heading, figures in found.items() if heading.startswith(title)]
        assert len(matching) == 1, f"no block {title!r}\n{output}"
        figures = matching[0]
        for label, sign in wanted.items():
            assert label in figures, f"{step}: no figure {label!r}\n{output}"
            value = float(figures[label])
            assert math.isfinite(value), f"{step}: {label} = {value}\n{output}"
            if sign == "positive":
                assert value > 0, f"{step}: {label} = {value}\n{output}"
            elif sign == "non-negative":
                assert value >= 0, f"{step}: {label} = {value}\n{output}"
    if "restart" in steps:
        rows = [TABLE_ROW.match(line) for line in finished.stdout.splitlines()]
        intervals = [int(row[1]) for row in rows if row]
        assert intervals == [100, 1000], f"snapshot interval table\n{output}"
    assert "== summary ==" in finished.stdout, output
    assert "goal" in finished.stdout.split("== summary ==")[1], output
    if "lag" not in steps:
        pytest.skip("lag and rss steps not run: wrk is not installed and, not being root, cannot be installed")
