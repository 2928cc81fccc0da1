"""bench.write_path stops what a finished run left behind, and nothing else.

A postmaster is played by a Python interpreter started through a link named ``bin/postgres``, with
a postmaster's ``-D`` argument: only one whose data folder is a benchmark's and is gone is stopped.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.write_path import orphaned_benchmark_servers, stop_orphaned_benchmark_servers


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        process.kill()
        process.wait()


def fake_postmaster(tmp_path: Path, data: Path, started: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    binary = tmp_path / "pginstall" / "bin" / "postgres"
    if not binary.exists():
        binary.parent.mkdir(parents=True)
        binary.symlink_to(sys.executable)
    process = subprocess.Popen([str(binary), "-c", "import time; time.sleep(60)", "-D", str(data)])
    started.append(process)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until its command line is the one given
        if Path(f"/proc/{process.pid}/cmdline").read_bytes().startswith(str(binary).encode()):
            return process
        time.sleep(0.01)
    raise TimeoutError("the fake postmaster did not start")


def test_a_benchmark_server_whose_folder_is_gone_is_stopped_and_others_are_left(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    gone = fake_postmaster(tmp_path, tmp_path / "coupon-bench-abc123" / "bench" / "pgdata", started)
    kept_folder = tmp_path / "coupon-bench-def456" / "bench" / "pgdata"
    kept_folder.mkdir(parents=True)
    kept = fake_postmaster(tmp_path, kept_folder, started)
    other = fake_postmaster(tmp_path, tmp_path / "someone-elses" / "pgdata", started)

    assert gone.pid in orphaned_benchmark_servers()
    assert kept.pid not in orphaned_benchmark_servers() and other.pid not in orphaned_benchmark_servers()

    stop_orphaned_benchmark_servers()
    assert gone.wait(5) != 0  # stopped by a signal
    assert kept.poll() is None and other.poll() is None
    assert gone.pid not in orphaned_benchmark_servers()
