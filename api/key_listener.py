"""Keeps one API process's memory of keys honest: a thread that listens for revoked keys (PostgreSQL
LISTEN on the channel api_keys' trigger notifies, schema.sql) and makes Retailers forget each one as
its revocation commits; on the same beat it writes back when keys were last used.

While the thread has no listening connection (before the first LISTEN, or after the connection was
lost: the database restarted, the network failed, the server ended the session) the process trusts
no remembered key: Retailers forgets them all and every request asks the database, one indexed
lookup each, until LISTEN works again. In that window a revocation takes effect at the next request,
as it is read from the database; the cost is a lookup per request. Once listening again, Retailers
forgets what it learned in the window (a notification sent then was never heard) and remembers keys
afresh. A connection that dies silently (no packet, no reset) is noticed by TCP keepalives within
about KEEPALIVE_IDLE + KEEPALIVE_INTERVAL x KEEPALIVE_COUNT seconds; in that time a revocation
committed by a process that can still reach the database is not heard here (the keys remembered
here stay trusted that long at most).
"""

from __future__ import annotations

import logging
import threading

import psycopg

from api.retailers import Retailers
from ledger.event_store import CONNECT_TIMEOUT

log = logging.getLogger(__name__)

CHANNEL = "api_key_revoked"  # schema.sql's api_keys_notify_revoked() sends the revoked key's id on it
TICK = 0.2  # seconds between looks at the stop flag and the queued key uses, when no notification comes
RETRY_EVERY = 0.5  # seconds between attempts to listen again after the connection was lost
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 2, 3


class KeyListener:
    def __init__(self, url: str, retailers: Retailers, tick: float = TICK, retry_every: float = RETRY_EVERY) -> None:
        self.url = url
        self.retailers = retailers
        self.tick = tick
        self.retry_every = retry_every
        self.listening = threading.Event()  # set while a LISTEN is in place (tests and health wait on it)
        self._stop = threading.Event()
        self._lost = False  # the loss of the connection was logged and its return not yet
        self._thread = threading.Thread(target=self._run, name="key-listener", daemon=True)

    def start(self) -> KeyListener:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as error:  # the connection failed or was lost: fall back, then try again
                self.retailers.distrust()
                if not self._lost and not self._stop.is_set():
                    log.warning(
                        "Not listening for revoked API keys (%s: %s); every request asks the database until it"
                        " listens again.",
                        type(error).__name__,
                        error,
                    )
                    self._lost = True  # said once per outage, not at every retry
            finally:
                self.listening.clear()
            self._record_uses()
            self._stop.wait(self.retry_every)
        self.retailers.distrust()  # stopped: nothing listens any more

    def _listen(self) -> None:
        with psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE,
            keepalives_interval=KEEPALIVE_INTERVAL,
            keepalives_count=KEEPALIVE_COUNT,
            application_name="coupon-ledger key listener",
        ) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            # Listening from here on: what was remembered before is forgotten, then trusted again.
            self.retailers.trust()
            self.listening.set()
            if self._lost:
                log.warning("Listening for revoked API keys again.")
                self._lost = False
            while not self._stop.is_set():
                for notify in conn.notifies(timeout=self.tick):
                    self.retailers.forget(notify.payload)
                self._record_uses()

    def _record_uses(self) -> None:
        try:
            self.retailers.record_uses()
        except Exception as error:  # the database is away: the uses stay queued for the next beat
            log.debug("Could not record API key uses: %s", error)
