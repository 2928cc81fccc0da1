"""What each child of `coupon-ledger serve` (an API worker, the projection process) does first:
arrange to die with serve, and join serve's claim on its data folder.

Kept light (no database or web imports): uvicorn unpickles ServeConfig in a new worker before the
worker answers the supervisor's health checks.
"""

from __future__ import annotations

import ctypes
import fcntl
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO

import uvicorn

SERVE_LOCK = "serve.lock"
HANDLES_FILE = "embedded.handles"  # the embedded server's users (api.database)
# The data folder of the serve a child belongs to (only when serve runs the embedded server).
SERVE_FOLDER_ENV = "COUPON_LEDGER_SERVE_FOLDER"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> None:
    """In a child of ``parent_pid``: receive ``signum`` when the parent ends, however it ends.

    On Linux the kernel sends it (``PR_SET_PDEATHSIG``); elsewhere a daemon thread polls the parent.
    A parent that is already gone (it died before this call) gets the same answer at once."""
    if not _set_parent_death_signal(signum):
        threading.Thread(target=_watch_parent, args=(parent_pid, signum), name="parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signum)


def _set_parent_death_signal(signum: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, signum: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os.kill(os.getpid(), signum)


class ServeConfig(uvicorn.Config):
    """uvicorn's settings, with a hook in every worker process uvicorn spawns: configure_logging is
    the first thing a spawned worker runs, before its server starts. There the worker sets up the
    logs (api/logs.py: JSON lines, uvicorn's loggers through them), arranges to die with serve and
    joins serve's claim on the data folder."""

    def configure_logging(self) -> None:
        super().configure_logging()
        from api.logs import configure_logging  # here: a worker loads it only once it runs

        configure_logging()
        parent = multiprocessing.parent_process()
        if parent is not None and parent.pid is not None:  # in a worker, not in serve itself
            die_with_parent(parent.pid)
            join_serve_folder()


_joined: list[IO[bytes]] = []  # kept open for the life of the process


def join_serve_folder() -> None:
    """In a child of serve: hold serve's folder lock and the embedded server's users lock (shared)
    while this process lives, so that no other start stops the database under it."""
    folder = os.environ.get(SERVE_FOLDER_ENV)
    if not folder:
        return
    for name in (SERVE_LOCK, HANDLES_FILE):
        lock = (Path(folder) / name).open("ab")
        fcntl.flock(lock, fcntl.LOCK_SH)
        _joined.append(lock)
