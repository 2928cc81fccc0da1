"""One clock for every process: the database's.

Whether a hold is still live decides whether a use may be made, so every process must read the same
time. ``DatabaseClock`` reads PostgreSQL's ``clock_timestamp()`` and runs it forward with this
process's monotonic clock between readings (a stepped or skewed wall clock changes nothing), reading
it again every ``resync`` seconds. It never goes backwards. If the database cannot be read, the last
reading is run forward; the first reading must succeed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta

log = logging.getLogger(__name__)


class DatabaseClock:
    def __init__(self, read: Callable[[], datetime], resync: float = 1.0) -> None:
        self._read = read
        self._resync = resync
        self._lock = threading.Lock()
        self._base: datetime | None = None
        self._at = 0.0  # monotonic time of the reading
        self._last: datetime | None = None

    def __call__(self) -> datetime:
        now = time.monotonic()
        if self._base is None or now - self._at >= self._resync:
            self._sample()
            now = time.monotonic()
        with self._lock:
            assert self._base is not None
            current = self._base + timedelta(seconds=now - self._at)
            if self._last is not None and current < self._last:
                current = self._last
            self._last = current
            return current

    def _sample(self) -> None:
        with self._lock:
            if self._base is not None and time.monotonic() - self._at < self._resync:
                return  # another thread read it meanwhile
            before = time.monotonic()
            try:
                reading = self._read()
            except Exception:
                if self._base is None:
                    raise
                log.debug("the database's clock could not be read; running the last reading on", exc_info=True)
                return
            after = time.monotonic()
            self._base, self._at = reading, (before + after) / 2


def postgres_now(pool: object) -> Callable[[], datetime]:
    """A reader of ``clock_timestamp()`` through a psycopg pool."""

    def read() -> datetime:
        with pool.connection() as conn:  # type: ignore[attr-defined]
            row = conn.execute("SELECT clock_timestamp()").fetchone()
        value = row[0] if isinstance(row, tuple) else row["clock_timestamp"]
        assert isinstance(value, datetime)
        # In the session's time zone (the server's, often Etc/UTC): the same instant in UTC itself,
        # which every event stamped with it is written in, and formatted fastest.
        return value.astimezone(UTC)

    return read


# The time of the decision being made (the writer's batch.now), which stamps the events it makes:
# an event's timestamp comes from the same clock that judged it.
DECISION_TIME: ContextVar[Callable[[], datetime] | None] = ContextVar("decision_time", default=None)


def event_time() -> datetime:
    decision_time = DECISION_TIME.get()
    return decision_time() if decision_time is not None else datetime.now(UTC)


class OneClock:
    """Mixed into the domain's events: their timestamps are the decision's time (see DECISION_TIME)."""

    create_timestamp = staticmethod(event_time)
