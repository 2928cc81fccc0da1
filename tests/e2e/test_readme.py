"""The README's walkthrough is what a real run of its commands answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_readme_walkthrough_is_what_its_commands_answer() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "walkthrough.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
