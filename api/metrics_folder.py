"""The folder where the processes of one `coupon-ledger serve` keep their metrics.

prometheus-client's multiprocess mode: each process (serve itself, every uvicorn worker, the
`project` child) writes its metrics to memory-mapped files of its own in ``PROMETHEUS_MULTIPROC_DIR``,
and a scrape reads and sums them all (api/exposition.py). serve makes the folder before anything
else (a new temporary folder, removed when serve exits; or the one the operator set, emptied), and
its children inherit the variable. The variable must be set before the process makes its first
metric, which is why ledger/metrics.py makes them on first use.

When a worker or the `project` child dies and is replaced, its files stay: its counters still
count towards the totals (they only ever grow), while ``mark_process_dead`` drops its live gauges
(the writer's queue depth), which would otherwise be summed with the replacement's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)
FOLDER_ENV = "PROMETHEUS_MULTIPROC_DIR"


class MetricsFolder:
    """A context: the folder set in the environment (for this process and its children)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self._made = False

    def __enter__(self) -> Path:
        given = os.environ.get(FOLDER_ENV)
        if given:
            path = Path(given)
            path.mkdir(parents=True, exist_ok=True)
            for stale in path.glob("*.db"):  # a previous run's: its totals are not this run's
                stale.unlink(missing_ok=True)
        else:
            path = Path(tempfile.mkdtemp(prefix="coupon-ledger-metrics-"))
            self._made = True
            os.environ[FOLDER_ENV] = str(path)
        self.path = path
        return path

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._made and self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            os.environ.pop(FOLDER_ENV, None)


def mark_process_dead(pid: int | None) -> None:
    """A process of this serve died: drop its live gauges from the folder (its counters stay)."""
    folder = os.environ.get(FOLDER_ENV)
    if pid is None or not folder:
        return
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]
