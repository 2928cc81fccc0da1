"""Request counts and durations are tallied on the event loop and added to the metrics in one go:
what the metrics then hold is exactly what one update per request would have made."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram

from api.access import DIRECT_ROUTE, FLUSH_AFTER, RequestObserver
from ledger.metrics import LATENCY_BUCKETS, Metrics, add_observations

# Every bound exactly, values between and past the last bound, zero and a negative duration.
DURATIONS = [*LATENCY_BUCKETS, 0.0, -0.5, 0.0004, 0.003, 0.0031, 0.7, 9.99, 10.0001, 42.0, 0.001, 0.001]


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample but the creation times; sums compared to the last bits (added in another order)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): pytest.approx(s.value, rel=1e-12, abs=1e-15)
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def request(method: str, route: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "state": {DIRECT_ROUTE: route}}


def test_added_observations_equal_observing_each_value() -> None:
    observed, added = CollectorRegistry(), CollectorRegistry()
    one_by_one = Histogram("latency", "", ["route"], buckets=LATENCY_BUCKETS, registry=observed)
    in_one_go = Histogram("latency", "", ["route"], buckets=LATENCY_BUCKETS, registry=added)
    counts = [0.0] * (len(LATENCY_BUCKETS) + 1)
    for seconds in DURATIONS:
        one_by_one.labels("/x").observe(seconds)
        counts[next((i for i, bound in enumerate(LATENCY_BUCKETS) if seconds <= bound), len(LATENCY_BUCKETS))] += 1
    add_observations(in_one_go.labels("/x"), sum(DURATIONS), counts)
    assert samples(added) == samples(observed)
    assert samples(added)[("latency_bucket", (("le", "+Inf"), ("route", "/x")))] == len(DURATIONS)


def expected_metrics(requests: list[tuple[str, str, int, float]]) -> Metrics:
    made = Metrics()
    for method, route, status, seconds in requests:
        made.http_requests.labels(method, route, str(status)).inc()
        made.http_duration.labels(method, route).observe(seconds)
    return made


REQUESTS = [
    *[("POST", "/v1/coupons/apply", 201, seconds) for seconds in DURATIONS],
    ("POST", "/v1/coupons/apply", 422, 0.002),
    ("GET", "/v1/coupons/{code}", 200, 0.02),
    ("GET", "/v1/coupons/{code}", 404, 3.0),
]


def test_requests_finished_on_the_event_loop_reach_the_metrics_within_the_flush_delay() -> None:
    observer = RequestObserver(access_log=False, metrics=Metrics())
    assert observer.metrics is not None

    async def serve() -> None:
        for method, route, status, seconds in REQUESTS:
            observer.finished(request(method, route), status, seconds)
        await asyncio.sleep(FLUSH_AFTER * 4)  # no one asks: the scheduled flush runs by itself

    asyncio.run(serve())
    assert samples(observer.metrics.registry) == samples(expected_metrics(REQUESTS).registry)


def test_a_flush_asked_for_adds_the_tally_at_once_and_later_requests_are_counted_again() -> None:
    observer = RequestObserver(access_log=False, metrics=Metrics())
    assert observer.metrics is not None

    async def serve() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        for method, route, status, seconds in REQUESTS[:5]:
            observer.finished(request(method, route), status, seconds)
        observer.flush()  # as GET /metrics does before it reads
        flushed = samples(observer.metrics.registry)  # type: ignore[union-attr]
        for method, route, status, seconds in REQUESTS[5:]:
            observer.finished(request(method, route), status, seconds)
        await asyncio.sleep(FLUSH_AFTER * 4)
        return flushed

    assert asyncio.run(serve()) == samples(expected_metrics(REQUESTS[:5]).registry)
    assert samples(observer.metrics.registry) == samples(expected_metrics(REQUESTS).registry)


def test_a_new_event_loop_gets_its_own_flush_when_the_last_one_went_with_its_loop() -> None:
    observer = RequestObserver(access_log=False, metrics=Metrics())
    assert observer.metrics is not None

    async def one_request(status: int) -> None:
        observer.finished(request("GET", "/healthz"), status, 0.001)

    asyncio.run(one_request(200))  # its loop closes before the flush it scheduled could run
    asyncio.run(one_request(200))
    asyncio.run(asyncio.sleep(FLUSH_AFTER * 4))  # a third loop: nothing of this observer's runs here

    async def last() -> None:
        observer.finished(request("GET", "/healthz"), 503, 0.001)
        await asyncio.sleep(FLUSH_AFTER * 4)

    asyncio.run(last())
    expected = [("GET", "/healthz", 200, 0.001)] * 2 + [("GET", "/healthz", 503, 0.001)]
    assert samples(observer.metrics.registry) == samples(expected_metrics(expected).registry)


def test_outside_an_event_loop_a_request_is_counted_at_once() -> None:
    observer = RequestObserver(access_log=False, metrics=Metrics())
    assert observer.metrics is not None
    observer.finished(request("GET", "/healthz"), 200, 0.004)
    expected = expected_metrics([("GET", "/healthz", 200, 0.004)])
    assert samples(observer.metrics.registry) == samples(expected.registry)
