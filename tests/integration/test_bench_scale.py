"""The scale benchmark: `python -m bench.scale` runs end to end on a primary and its standby.

Only the shape of the report is checked (its five rows, no errors, reads counted on the standby):
never a timing or a ratio.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| (.+?)\s+\|\s+(\d+) \|\s+[\d.]+ \|\s+[\d.]+ \|\s+(\d+) \|$")
SCANS = re.compile(r"standby scans of coupons during warm-up and run: (\d+) \(measured requests: (\d+)\)")


@pytest.mark.skipif(shutil.which("wrk") is None and os.geteuid() != 0, reason="wrk is needed")
def test_a_short_run_reports_every_row_without_errors_and_the_standby_serves_the_replica_reads() -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("PERSISTENCE_MODULE") and k != "DATABASE_URL"}
    done = subprocess.run(
        # No warm-up: the measured second runs the same wrk script on the same servers.
        [sys.executable, "-m", "bench.scale", "--seconds", "1", "--warmup", "0", "--coupons", "40"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard, not a timing assertion
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {m[1]: (int(m[2]), int(m[3])) for m in map(ROW.match, done.stdout.splitlines()) if m}
    assert len(rows) == 5, done.stdout
    assert all(ok > 0 and errors == 0 for ok, errors in rows.values()), rows
    scans = SCANS.search(done.stdout)
    assert scans is not None, done.stdout
    assert int(scans[2]) > 0
    assert int(scans[1]) > 0  # the standby served reads (how many depends on its lag under the load)
