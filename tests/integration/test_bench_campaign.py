"""The campaign benchmark: `python -m bench.campaign --count N` runs end to end and reports every
figure. Only the shape of the report is checked, never a timing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.campaigns import CAMPAIGN_CHUNK

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_the_campaign_benchmark_reports_generation_read_model_and_read_back(database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("PERSISTENCE_MODULE")}
    env["DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, "-m", "bench.campaign", "--count", "1500"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(
        rf"codes: 1500 \(prefix BENCH-, {CAMPAIGN_CHUNK} per save\), retailer [0-9a-f-]{{36}}", lines[0]
    )
    assert re.fullmatch(r"generation, as the command reports: \d+\.\d\d s = [\d,]+ codes/s", lines[1])
    assert re.fullmatch(r"generation, wall time of the command: \d+\.\d\d s = [\d,]+ codes/s", lines[2])
    assert re.fullmatch(
        r"read model: every code listed \d+\.\d\d s after the command ended \(\d+\.\d\d s in all\)", lines[3]
    )
    assert re.fullmatch(r"read back in code order \(the CSV export's reads\): 1500 codes in \d+\.\d\d s", lines[4])
