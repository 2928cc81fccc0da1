"""Webhooks with the real `coupon-ledger serve`: the projection child makes and sends the
deliveries. Killing that child loses no delivery and makes none twice; an endpoint that hangs or
refuses connections holds up no redemption."""

from __future__ import annotations

import json
import os
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.support.postgres import Server, auth, create_coupon, free_port, projection_children, run_cli, wait_for

pytestmark = pytest.mark.slow

FAST_RETRIES = {
    "COUPON_LEDGER_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "COUPON_LEDGER_WEBHOOK_RETRY_MAX_SECONDS": "1",
    "COUPON_LEDGER_WEBHOOK_POLL_SECONDS": "0.1",
    "COUPON_LEDGER_WEBHOOK_TIMEOUT_SECONDS": "2",
}


@pytest.fixture
def server(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Server, str]]:
    for name, value in FAST_RETRIES.items():
        monkeypatch.setenv(name, value)
    created = run_cli(database_url, "retailer", "create", "Hooked Shop")
    assert created.returncode == 0, created.stderr
    api_key = json.loads(created.stdout.strip().splitlines()[-1])["api_key"]
    running = Server(database_url, tmp_path, "serve")
    try:
        running.wait_healthy()
        yield running, api_key
    finally:
        running.terminate()


def create_endpoint(server: Server, api_key: str, url: str) -> str:
    response = httpx.post(
        f"{server.base_url}/v1/webhooks/endpoints",
        json={"url": url, "events": ["redemption.created", "coupon.exhausted"]},
        headers=auth(api_key),
        timeout=30,
    )
    assert response.status_code == 201, response.text
    endpoint_id: str = response.json()["id"]
    return endpoint_id


def apply(server: Server, api_key: str, code: str, n: int) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/coupons/apply",
        json={"code": code, "subtotal": "20.00"},
        headers={**auth(api_key), "Idempotency-Key": f"{code}-{n}"},
        timeout=30,
    )


def timed_applies(serve: Server, api_key: str, code: str, count: int = 40) -> list[float]:
    """Seconds each of ``count`` applies took; each must be a 201 with the right total."""
    seconds = []
    for n in range(count):
        started = time.perf_counter()
        response = apply(serve, api_key, code, n)
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 201, response.text
        assert response.json()["final_total"] == "18.00"
    return seconds


def test_killing_the_projection_process_neither_loses_nor_duplicates_deliveries(
    server: tuple[Server, str], database_url: str, httpserver: HTTPServer
) -> None:
    serve, api_key = server
    received: list[dict[str, object]] = []
    httpserver.expect_request("/hook", method="POST").respond_with_handler(
        lambda request: received.append(json.loads(request.get_data())) or Response("ok")
    )
    endpoint_id = create_endpoint(serve, api_key, httpserver.url_for("/hook"))
    create_coupon(serve, api_key, "RESTART", 30)
    for n in range(15):
        assert apply(serve, api_key, "RESTART", n).status_code == 201
    [child] = wait_for(lambda: projection_children(serve.process.pid), 10)
    os.kill(child, signal.SIGKILL)  # serve starts it again
    for n in range(15, 30):
        assert apply(serve, api_key, "RESTART", n).status_code == 201
    wait_for(lambda: {b["id"] for b in received} and len({b["id"] for b in received}) == 31, 60, interval=0.2)
    assert projection_children(serve.process.pid) not in ([], [child])

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT event_id, status, event_type FROM webhook_deliveries WHERE endpoint_id = %s"
            " ORDER BY position, ordinal",
            (endpoint_id,),
        ).fetchall()
    assert len(rows) == len({r[0] for r in rows}) == 31  # one row per event, none twice
    assert [r[2] for r in rows] == ["redemption.created"] * 30 + ["coupon.exhausted"]
    wait_for(
        lambda: (
            psycopg.connect(database_url)
            .execute(
                "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = %s AND status = 'succeeded'",
                (endpoint_id,),
            )
            .fetchone()
            == (31,)
        ),
        20,
    )
    # Received in log order (a delivery cut off by the kill may come twice: same event id).
    first_seen = list(dict.fromkeys(str(b["id"]) for b in received))
    assert first_seen == [r[0] for r in rows]


def test_an_endpoint_that_hangs_or_refuses_holds_up_no_redemption(
    server: tuple[Server, str], httpserver: HTTPServer
) -> None:
    serve, api_key = server
    release = threading.Event()

    def hang(request: Request) -> Response:
        release.wait(30)
        return Response("late")

    httpserver.expect_request("/hang", method="POST").respond_with_handler(hang)
    create_coupon(serve, api_key, "BASELINE", None)
    baseline = timed_applies(serve, api_key, "BASELINE")  # no endpoint yet
    hanging = create_endpoint(serve, api_key, httpserver.url_for("/hang"))
    refusing = create_endpoint(serve, api_key, f"http://127.0.0.1:{free_port()}/hook")
    create_coupon(serve, api_key, "UNBOTHERED", None)
    try:
        seconds = timed_applies(serve, api_key, "UNBOTHERED")
        coupon = httpx.get(f"{serve.base_url}/v1/coupons/UNBOTHERED", headers=auth(api_key), timeout=30).json()
        assert coupon["uses_count"] == 40

        def listed(endpoint_id: str) -> list[dict[str, object]]:
            response = httpx.get(
                f"{serve.base_url}/v1/webhooks/deliveries",
                params={"endpoint_id": endpoint_id, "limit": 200},
                headers=auth(api_key),
                timeout=30,
            )
            data: list[dict[str, object]] = response.json()["data"]
            return data

        # Both endpoints have their 40 deliveries, tried and pending (in order: the first is tried).
        for endpoint_id in (hanging, refusing):
            wait_for(lambda e=endpoint_id: len(listed(e)) == 40 and any(d["attempts"] for d in listed(e)), 30)
            assert {d["status"] for d in listed(endpoint_id)} == {"pending"}
        refused = [d for d in listed(refusing) if d["attempts"]]
        assert refused and all(d["last_status_code"] is None and d["last_error"] for d in refused)
        for name, times in (("no endpoint", baseline), ("a hanging and a refusing endpoint", seconds)):
            print(  # for the record: apply latency, not asserted
                f"\napply with {name}: median {statistics.median(times) * 1000:.1f} ms,"
                f" max {max(times) * 1000:.1f} ms over {len(times)}"
            )
    finally:
        release.set()
