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
dict lookups and the metric updates themselves.
"""

from __future__ import annotations

import os
from typing import Any, Final

from starlette.types import Scope

from api.logs import access_logger
from ledger.metrics import Metrics

METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED: Final = "unmatched"  # the route label of a request no route matched (a 404)
CLIENT_CLOSED: Final = 499  # the status of a request whose client left before any response was sent


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
        assert self.metrics is not None
        counter = self._counted.get((method, route, status))
        if counter is None:
            counter = self._counted[(method, route, status)] = self.metrics.http_requests.labels(
                method, route, str(status)
            )
        timer = self._timed.get((method, route))
        if timer is None:
            timer = self._timed[(method, route)] = self.metrics.http_duration.labels(method, route)
        counter.inc()
        timer.observe(seconds)
