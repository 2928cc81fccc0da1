"""The state-then benchmark: `python -m bench.state_then N` writes its history, reads it back at
every kind of point and reports each figure. Only the shape of the report is checked, never a timing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FIGURES = r"\s+\d+\.\d\d\s+\d+\.\d\d   "


def test_the_state_then_benchmark_reports_each_read_of_a_long_history(database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("PERSISTENCE_MODULE")}
    env["DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, "-m", "bench.state_then", "1234", "--repeat", "2", "--chunk", "200"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.match(r"# state then: one coupon, 1,234 events, snapshot interval 100, 2 reads each", lines[0])
    assert re.match(r"# history written in \d+\.\d s", lines[1])
    assert lines[2].split() == ["read", "p50", "ms", "p90", "ms", "note"]
    expected = [
        r"current coupon, first read \(nothing cached\)",
        r"state after version 1 ",
        r"state after version 699 \(middle\)",
        r"state after version 1,234 \(last\)",
        r"state at a moment between two middle events",
        r"current coupon \(cached, brought up to date\)",
    ]
    assert len(lines) == 3 + len(expected)
    for line, name in zip(lines[3:], expected, strict=True):
        assert re.match(name + r".*" + FIGURES, line), line
    assert lines[7].endswith("-> version 699"), lines[7]
