"""SIGTERM and SIGINT: the signals that stop serve and project, and serve's handling of a first and a second one."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopFlag:
    """Set by a signal handler, read anywhere: a plain attribute, no lock.

    A handler runs in the main thread between two bytecodes, so a ``threading.Event`` would be set
    while the main thread may be inside that same Event's ``wait`` or ``set``, holding its lock:
    a second signal there (Ctrl-C to the group, then serve's SIGTERM, or the parent-death signal)
    blocks the process for good on a lock it holds itself."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class ShutdownSignals:
    """SIGTERM and SIGINT for `serve`: the first stops the service cleanly, a second ends it at once.

    While uvicorn serves, its own handlers take the signals (graceful shutdown: no new connections,
    in-flight requests finish, then the app's lifespan closes). Before it runs (start-up) a signal
    is remembered and serve stops once started; after it has returned (stopping the projection
    process and the embedded PostgreSQL) any signal is a second one: the projection process is
    killed, the embedded server is asked to shut down without waiting, and the process exits.
    """

    def __init__(self) -> None:
        self.requested = StopFlag()
        self.phase = "starting"
        self.on_force: list[Callable[[], None]] = []
        self.stop_server: Callable[[], None] = lambda: None
        self._previous = {signum: signal.signal(signum, self._handle) for signum in STOP_SIGNALS}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.phase == "serving":
            # uvicorn handled it and re-raises it as it returns; or it came before uvicorn took over.
            self.requested.set()
            self.stop_server()
            return
        if self.phase == "starting" and not self.requested.is_set():
            log.warning("received %s: stopping once started", signal.Signals(signum).name)
            self.requested.set()
            return
        self.force(signum)

    def force(self, signum: int) -> None:
        print(f"received {signal.Signals(signum).name} again: exiting now", file=sys.stderr, flush=True)
        for callback in self.on_force:
            with contextlib.suppress(Exception):  # exiting anyway
                callback()
        os._exit(128 + signum)

    def serving(self) -> None:
        self.phase = "serving"

    def stopping(self) -> None:
        """uvicorn has returned; re-install the handlers (a multi-worker uvicorn leaves its own)."""
        self.phase = "stopping"
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
