"""`coupon-ledger project` stops on a burst of SIGTERM and SIGINT (Ctrl-C to the group, then serve's
SIGTERM, then the parent-death signal): a signal that comes while the handler of the one before is
still running must not leave the process blocked on a lock it holds itself."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.postgres import CLI, cli_env, leader_lock_holders, wait_for


@pytest.mark.slow
def test_a_burst_of_stop_signals_stops_project(database_url: str, tmp_path: Path) -> None:
    log_path = tmp_path / "project.log"
    with log_path.open("w") as log:
        project = subprocess.Popen([CLI, "project"], env=cli_env(database_url), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: leader_lock_holders(database_url), 60, message="project never led")
            for sent in range(5000):
                if project.poll() is not None:
                    break
                os.kill(project.pid, signal.SIGINT if sent % 2 else signal.SIGTERM)
            code = project.wait(30)
        except subprocess.TimeoutExpired:
            project.kill()
            project.wait()
            raise AssertionError(f"project did not stop within 30 s:\n{log_path.read_text()}") from None
    assert code == 0, log_path.read_text()
