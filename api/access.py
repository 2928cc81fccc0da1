"""What happens when a request ends (api.app.RequestContext calls it once per request): its access
line and its metrics.

The access line (logger ``coupon_ledger.access``, event ``request``) carries the request id (the
one X-Request-ID and the error body carry), the method, the route template (``/v1/coupons/{code}``,
never the path, which may hold a coupon code), the status, the duration in milliseconds, the public
id of the API key (``key_…``, never the key), the client's address and the pid of the worker.
uvicorn's own access log is off, so there is exactly one line per request.

The metrics are ``coupon_ledger_http_requests_total{method,route,status}`` and
``coupon_ledger_http_request_duration_seconds{method,route}``. Every label is a bounded set: a
method outside the HTTP methods counts as OTHER, a path no route matches as ``unmatched``. The
labelled children are looked up once per (method, route, status) and kept, so a request costs two
dict lookups and the metric updates themselves. The updates are tallied in plain Python on the
event loop's thread and added to the metrics at most ``FLUSH_AFTER`` seconds later (and before
every scrape this process answers): in prometheus-client's multiprocess mode each update takes a
lock, asks the kernel for the pid and writes a memory-mapped file, three times per request, which
was a tenth of the event loop's instructions on the redemption route. Under load one flush carries
a hundred requests; a worker killed outright loses the last 50 ms of its request counts.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from typing import Any, Final

from starlette.types import Scope

from api.logs import access_logger
from ledger.metrics import LATENCY_BUCKETS, Metrics, add_observations

METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED: Final = "unmatched"  # the route label of a request no route matched (a 404)
CLIENT_CLOSED: Final = 499  # the status of a request whose client left before any response was sent
FLUSH_AFTER: Final = 0.05  # seconds at most between a request's end and its counts in the metrics


DIRECT_ROUTE: Final = "route_template"  # in the scope's state: the template of a route served without the router


def route_template(scope: Scope) -> str:
    """The template of the route that served the request: the one the router matched (it sets it
    on the scope), or the direct route's (api.app.RequestContext); else ``unmatched``."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str) and path:
        return path
    return str((scope.get("state") or {}).get(DIRECT_ROUTE) or UNMATCHED)


class RequestObserver:
    def __init__(self, access_log: bool, metrics: Metrics | None) -> None:
        self.log = access_logger("coupon_ledger.access") if access_log else None
        self.pid = os.getpid()  # which worker served it, with --workers N
        self.metrics = metrics
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}
        # Tallied since the last flush: requests by (method, route, status); by (method, route) the
        # sum of their durations, then how many fell in each bucket (LATENCY_BUCKETS, then +Inf).
        self._counts: dict[tuple[str, str, int], int] = {}
        self._timings: dict[tuple[str, str], list[float]] = {}
        self._flush_on: asyncio.AbstractEventLoop | None = None  # the loop a flush is scheduled on

    def finished(self, scope: Scope, status: int, seconds: float) -> None:
        """Record a finished request."""
        method = scope["method"]
        if method not in METHODS:
            method = "OTHER"
        route = route_template(scope)
        if self.metrics is not None:
            self._count(method, route, status, seconds)
        if self.log is not None:
            state = scope.get("state") or {}
            client = scope.get("client")
            self.log.info(
                "request",
                request_id=state.get("request_id"),
                method=method,
                route=route,
                status=status,
                duration_ms=round(seconds * 1000, 3),
                key_id=state.get("key_id"),
                client=client[0] if client else None,
                pid=self.pid,
            )

    def _count(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        timing = self._timings.get((method, route))
        if timing is None:
            timing = self._timings[(method, route)] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        timing[0] += seconds
        timing[1 + bisect_left(LATENCY_BUCKETS, seconds)] += 1  # the first bucket whose bound is >= it
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop: nothing would run a flush later
            self.flush()
            return
        if self._flush_on is not loop:  # none scheduled, or on a loop that has since gone
            self._flush_on = loop
            loop.call_later(FLUSH_AFTER, self.flush)

    def flush(self) -> None:
        """Add what was tallied since the last flush to the metrics. On the thread that tallies
        (the event loop's): scheduled by the first request after a flush, called by GET /metrics
        before it reads them, and when the app shuts down."""
        self._flush_on = None
        counts, self._counts = self._counts, {}
        timings, self._timings = self._timings, {}
        if self.metrics is None:
            return
        for (method, route, status), count in counts.items():
            counter = self._counted.get((method, route, status))
            if counter is None:
                counter = self._counted[(method, route, status)] = self.metrics.http_requests.labels(
                    method, route, str(status)
                )
            counter.inc(count)
        for (method, route), timing in timings.items():
            timer = self._timed.get((method, route))
            if timer is None:
                timer = self._timed[(method, route)] = self.metrics.http_duration.labels(method, route)
            add_observations(timer, timing[0], timing[1:])
