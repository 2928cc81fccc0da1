"""Sends the outbox: the webhook deliveries the projection made, from the projection process.

A few worker threads, each with its own database connection and HTTP client, loop: in one
transaction, take the next due delivery with ``SELECT … FOR UPDATE SKIP LOCKED`` (so two workers,
of this process or another, never send the same delivery at once), POST it signed
(signature.py), record the outcome, commit. A delivery is due when its next attempt is now or past
and no earlier delivery of the same subject (coupon or campaign) to the same endpoint is still
pending: an endpoint gets a coupon's events in log order. A failed attempt (no answer within the
timeout, a refused connection, any status but 2xx) is tried again after an exponential backoff
with jitter; one whose next attempt would fall past the retry window (24 hours by default) from
when it was made (or queued again) is marked failed.

It runs outside the API's processes and touches no table a redemption writes: a dead or slow
endpoint holds a worker, never a request.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from ledger.event_store import CONNECT_TIMEOUT
from ledger.metrics import metrics
from projections.webhooks.signature import EVENT_ID_HEADER, SIGNATURE_HEADER, signature_header

log = logging.getLogger(__name__)

USER_AGENT = "coupon-ledger-webhooks/1"
MAX_ERROR_LENGTH = 500


@dataclass(frozen=True)
class DispatchSettings:
    workers: int = 2
    poll_interval: float = 1.0  # seconds between looks for due deliveries when there were none
    timeout: float = 5.0  # seconds to connect, and between bytes of the answer
    retry_base: float = 30.0  # the first retry's delay (seconds); doubled after each failure
    retry_max: float = 3600.0  # no delay longer than this
    retry_window: float = 86_400.0  # retried for this long from when it was made or queued again


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    status_code: int | None
    error: str | None


def record_delivery_outcome(event_type: str, outcome: Outcome) -> None:
    """Each attempt's outcome, besides its row: ``coupon_ledger_webhook_deliveries_total{outcome}``."""
    label = "delivered" if outcome.succeeded else "failed"
    log.debug("webhook %s delivery %s", event_type, label)
    if (m := metrics()) is not None:
        m.webhook_deliveries.labels(label).inc()


def backoff_delay(attempts: int, settings: DispatchSettings) -> float:
    """The delay before the next attempt after ``attempts`` failed ones: base x 2^(attempts-1),
    at most retry_max, then jittered to between half and all of it (so that deliveries that
    failed together do not all come back together)."""
    delay = min(settings.retry_max, settings.retry_base * 2 ** min(attempts - 1, 60))
    return delay * random.uniform(0.5, 1.0)


# The next due delivery this worker may send, locked for the transaction; skipped if another
# worker holds it, and not due while an earlier one of its subject to its endpoint is pending.
CLAIM = """
SELECT d.id, d.event_id, d.event_type, d.payload, d.attempts, e.url, e.secret
FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND e.disabled_at IS NULL
  AND NOT EXISTS (
    SELECT 1 FROM webhook_deliveries p
    WHERE p.endpoint_id = d.endpoint_id AND p.subject_id = d.subject_id AND p.status = 'pending'
      AND (p.position, p.ordinal) < (d.position, d.ordinal))
ORDER BY d.next_attempt_at, d.position, d.ordinal
LIMIT 1
FOR UPDATE OF d SKIP LOCKED
"""

RECORD_SUCCESS = """
UPDATE webhook_deliveries SET status = 'succeeded', attempts = attempts + 1, last_status_code = %s,
    last_error = NULL, next_attempt_at = NULL, delivered_at = now()
WHERE id = %s
"""

# A failed attempt: tried again after the delay, unless that falls past the retry window.
RECORD_FAILURE = """
UPDATE webhook_deliveries SET attempts = attempts + 1, last_status_code = %(code)s, last_error = %(error)s,
    status = CASE WHEN now() + %(delay)s > retry_from + %(window)s THEN 'failed' ELSE 'pending' END,
    next_attempt_at = CASE WHEN now() + %(delay)s > retry_from + %(window)s THEN NULL ELSE now() + %(delay)s END
WHERE id = %(id)s
"""


class Dispatcher:
    """The worker threads that send due deliveries (see the module)."""

    def __init__(self, conninfo: str, settings: DispatchSettings) -> None:
        self.conninfo = conninfo
        self.settings = settings
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"webhook-dispatcher-{n}", daemon=True)
            for n in range(settings.workers)
        ]

    def start(self) -> Dispatcher:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)

    def _work(self) -> None:
        with httpx.Client(timeout=self.settings.timeout, follow_redirects=False) as client:
            while not self._stopping.is_set():
                try:
                    with psycopg.connect(
                        self.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT, row_factory=dict_row
                    ) as conn:
                        while not self._stopping.is_set():
                            if not self.send_next(conn, client):
                                self._stopping.wait(self.settings.poll_interval)
                except Exception:
                    log.exception("webhook dispatcher failed; starting again")
                    self._stopping.wait(self.settings.poll_interval)

    def send_next(self, conn: psycopg.Connection[dict[str, Any]], client: httpx.Client) -> bool:
        """Send the next due delivery, if there is one, and record its outcome; whether there was one."""
        with conn.transaction():
            delivery = conn.execute(CLAIM).fetchone()
            if delivery is None:
                return False
            outcome = self.post(client, delivery)
            if outcome.succeeded:
                conn.execute(RECORD_SUCCESS, (outcome.status_code, delivery["id"]))
            else:
                conn.execute(
                    RECORD_FAILURE,
                    {
                        "id": delivery["id"],
                        "code": outcome.status_code,
                        "error": outcome.error,
                        "delay": timedelta(seconds=backoff_delay(delivery["attempts"] + 1, self.settings)),
                        "window": timedelta(seconds=self.settings.retry_window),
                    },
                )
        record_delivery_outcome(delivery["event_type"], outcome)
        return True

    @staticmethod
    def post(client: httpx.Client, delivery: dict[str, Any]) -> Outcome:
        body = delivery["payload"].encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signature_header(delivery["secret"], body),
            EVENT_ID_HEADER: delivery["event_id"],
        }
        try:
            # Only the status counts: the answer's body is not read (a slow one holds no worker).
            with client.stream("POST", delivery["url"], content=body, headers=headers) as response:
                status = response.status_code
        except Exception as error:  # refused, timed out, or a URL the client cannot use
            return Outcome(False, None, f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH])
        if 200 <= status < 300:
            return Outcome(True, status, None)
        return Outcome(False, status, f"HTTP {status}")
