"""Keeping the processes of `coupon-ledger serve` together.

- Its children (uvicorn's worker processes and the `coupon-ledger project` child) die with it: each
  asks the kernel for SIGTERM when its parent goes (``PR_SET_PDEATHSIG``; else a thread that watches
  its parent), so a SIGKILLed serve leaves no worker holding its port or using its database.
- A serve claims its data folder (``serve.lock``, held shared by it and every child) and its port
  before it touches the database: a start that finds either in use refuses, naming the processes
  that hold them, and stops nothing.
- The embedded PostgreSQL is started again if it dies while serve runs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import IO

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from api.children import SERVE_LOCK
from api.database import InUse, folder_lock, restart_embedded_if_down, try_exclusive
from api.metrics_folder import mark_process_dead

log = logging.getLogger(__name__)


# --- the data folder and the port: claimed before anything starts ---------------------------------


class ServeFolder:
    """``serve.lock`` of a data folder, held shared by a serve and each of its children.

    A serve starts only if it can take the lock exclusively (under the folder's start/stop lock,
    so two starts take turns): no process of any other serve is alive in the folder. The kernel
    drops a process's lock when it ends, however it ends."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.path = self.data_dir / SERVE_LOCK
        self._file: IO[bytes] | None = None

    def claim(self) -> ServeFolder:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with folder_lock(self.data_dir):
            lock = self.path.open("ab")
            if not try_exclusive(lock):
                lock.close()
                holders = pids_holding_files([self.path])
                raise InUse(
                    f"the data folder {self.data_dir} is in use by another serve"
                    f" ({describe_pids(holders)}); stop it, or wait for its processes to exit"
                )
            fcntl.flock(lock, fcntl.LOCK_SH)
        self._file = lock
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def listen(config: uvicorn.Config) -> socket.socket:
    """The socket for ``config``'s host and port, bound; InUse naming the holders if it is taken."""
    family = socket.AF_INET6 if config.host and ":" in config.host else socket.AF_INET
    sock = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        # Bound, not listening: until the server starts (once the database is up) a connection is
        # refused at once rather than left waiting in the backlog. A live listener is found here.
        sock.bind((config.host, config.port))
    except OSError as error:
        sock.close()
        if error.errno != errno.EADDRINUSE:
            raise InUse(f"cannot listen on {config.host}:{config.port}: {error.strerror}") from None
        holders = pids_holding_sockets(listening_socket_inodes(config.port))
        raise InUse(f"the port {config.port} is in use ({describe_pids(holders)})") from None
    sock.set_inheritable(True)
    return sock


def describe_pids(pids: Iterable[int]) -> str:
    found = sorted(set(pids))
    if not found:
        return "by a process this user cannot see"
    return "by process " + ", ".join(f"{pid} ({command_of(pid)})" for pid in found)


def command_of(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return "?"
    return " ".join(os.fsdecode(arg) for arg in argv)[:120]


def _open_targets() -> Iterable[tuple[int, str]]:
    """(pid, target) of every open file descriptor this user can read, from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    yield int(entry.name), os.readlink(fd)


def pids_holding_files(paths: Iterable[Path]) -> set[int]:
    wanted = {str(path) for path in paths}
    return {pid for pid, target in _open_targets() if target in wanted and pid != os.getpid()}


def listening_socket_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                    inodes.add(fields[9])
    return inodes


def pids_holding_sockets(inodes: set[str]) -> set[int]:
    wanted = {f"socket:[{inode}]" for inode in inodes}
    return {pid for pid, target in _open_targets() if target in wanted}


# --- the embedded PostgreSQL: started again if it dies ---------------------------------------------


class PostmasterWatch:
    """A thread of serve that starts the embedded PostgreSQL of ``data_dir`` again if it dies."""

    def __init__(self, data_dir: Path, interval: float = 0.5) -> None:
        self.data_dir = data_dir
        self.interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="postmaster-watch", daemon=True)

    def __enter__(self) -> PostmasterWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                if restart_embedded_if_down(self.data_dir, should_stop=self._stopping.is_set):
                    log.warning("the embedded PostgreSQL of %s had stopped: started it again", self.data_dir)
            except Exception:  # the next round tries again (old backends may still be exiting)
                log.exception("could not start the embedded PostgreSQL of %s again", self.data_dir)


# --- the projection child and uvicorn ---------------------------------------------------------------


class ProjectionProcess:
    """`coupon-ledger project` as a child of `serve`: restarted if it dies, stopped with serve; it
    dies with serve, even a killed one (``die_with_parent``)."""

    def __init__(self, parent_pid: int, should_stop: Callable[[], bool] = lambda: False) -> None:
        self.command = [sys.executable, "-m", "api.cli", "project", "--parent", str(parent_pid)]
        self.process: subprocess.Popen[bytes] | None = None
        self.should_stop = should_stop
        self._stopping = threading.Event()
        self._watchdog = threading.Thread(target=self._keep_running, name="projection-process", daemon=True)

    def __enter__(self) -> ProjectionProcess:
        self.process = subprocess.Popen(self.command)
        self._watchdog.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        self._watchdog.join()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        self._stopping.set()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    def _keep_running(self) -> None:
        # A child started here gets its parent-death signal when this thread ends: that is, when
        # serve stops (it would be stopped then anyway) or dies.
        while not self._stopping.wait(1.0):
            if self.should_stop():  # serve is stopping: a child that stopped (Ctrl-C) stays stopped
                continue
            if self.process is not None and self.process.poll() is not None:
                log.error("the projection process exited with %s; starting it again", self.process.returncode)
                mark_process_dead(self.process.pid)
                self.process = subprocess.Popen(self.command)


class Server(uvicorn.Server):
    """uvicorn's server, where a second SIGTERM, not only a second SIGINT, stops waiting for
    in-flight requests."""

    def request_exit(self) -> None:
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            self.force_exit = True
        super().handle_exit(sig, frame)


class Supervisor(Multiprocess):
    """uvicorn's supervisor of several workers, where a signal that comes while the workers finish
    their requests kills them instead of being ignored, and a worker it replaces (dead, hung,
    restarted on SIGHUP, dropped on SIGTTOU) is marked dead in the metrics folder."""

    def keep_subprocess_alive(self) -> None:
        before = self._pids()
        super().keep_subprocess_alive()
        self._forget(before)

    def restart_all(self) -> None:
        before = self._pids()
        super().restart_all()
        self._forget(before)

    def handle_ttou(self) -> None:
        before = self._pids()
        super().handle_ttou()
        self._forget(before)

    def _pids(self) -> set[int | None]:
        return {worker.pid for worker in self.processes}

    def _forget(self, before: set[int | None]) -> None:
        for pid in before - self._pids():
            mark_process_dead(pid)

    def join_all(self) -> None:
        for worker in self.processes:
            while worker.process.is_alive():
                if self.signal_queue:
                    log.warning("second signal: killing the workers")
                    for other in self.processes:
                        other.kill()
                worker.process.join(0.1)
