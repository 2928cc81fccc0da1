"""A real `coupon-ledger serve --workers 2`: GET /metrics sums every worker's counts, whichever
worker answers, with bounded labels only; stderr is JSON lines, one access line per request with
its route template, status and request id, and no key or coupon code anywhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.postgres import CLI, auth, cli_env, free_port, run_cli, wait_for

pytestmark = pytest.mark.slow

APPLIES = 7
REFUSALS = 4


class Serve:
    """`coupon-ledger serve` with its stdout and stderr kept apart (the logs are on stderr)."""

    def __init__(self, url: str, folder: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = folder / f"serve-{self.port}.stderr"
        self.stdout_path = folder / f"serve-{self.port}.stdout"
        with self.stderr_path.open("w") as stderr, self.stdout_path.open("w") as stdout:
            self.process = subprocess.Popen(
                [CLI, "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
                env={**cli_env(url), **(env or {})},
                stdout=stdout,
                stderr=stderr,
            )

    def healthy(self) -> httpx.Response | None:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.stderr()}")
        try:
            response = httpx.get(f"{self.base_url}/healthz", timeout=1.0)
        except httpx.TransportError:
            return None
        return response if response.status_code == 200 else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def stderr(self) -> str:
        return self.stderr_path.read_text()


@pytest.fixture
def retailer(database_url: str) -> dict[str, str]:
    created = run_cli(database_url, "retailer", "create", "Observed Shop")
    assert created.returncode == 0, created.stderr
    printed: dict[str, str] = json.loads(created.stdout.strip().splitlines()[-1])
    return printed


@pytest.fixture
def serve(database_url: str, tmp_path: Path) -> Iterator[Serve]:
    server = Serve(database_url, tmp_path, "--workers", "2")
    try:
        yield server
    finally:
        server.stop()


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def value(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in found if n == name and all(lab.get(k) == want for k, want in labels.items()))


def test_metrics_sum_the_workers_and_every_request_has_one_json_access_line(
    serve: Serve, retailer: dict[str, str], database_url: str
) -> None:
    responses: list[httpx.Response] = []
    first = wait_for(serve.healthy, 60, message="serve healthy")
    responses.append(first)
    key = retailer["api_key"]
    code = f"OBSERVED{uuid4().hex[:8].upper()}"
    customer = f"customer-{uuid4().hex[:8]}"

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        # A new connection each time: the kernel hands connections to either worker.
        response = httpx.request(method, f"{serve.base_url}{path}", timeout=30, **kwargs)
        responses.append(response)
        return response

    created = call(
        "POST",
        "/v1/coupons",
        json={"code": code, "discount_type": "percentage", "discount_value": "10", "min_order_value": "50"},
        headers=auth(key),
    )
    assert created.status_code == 201, created.text
    for number in range(APPLIES):
        applied = call(
            "POST",
            "/v1/coupons/apply",
            json={"code": code, "subtotal": "100.00", "customer_id": customer},
            headers={**auth(key), "Idempotency-Key": f"order-{number}"},
        )
        assert applied.status_code == 201, applied.text
    replayed = call(
        "POST",
        "/v1/coupons/apply",
        json={"code": code, "subtotal": "100.00", "customer_id": customer},
        headers={**auth(key), "Idempotency-Key": "order-0"},
    )
    assert replayed.headers["Idempotent-Replayed"] == "true"  # not a new redemption
    for _ in range(REFUSALS):
        body = {"code": code, "subtotal": "10.00", "customer_id": customer}
        refused = call("POST", "/v1/coupons/apply", json=body, headers=auth(key))
        assert refused.json()["error"]["code"] == "MIN_ORDER_NOT_MET"
    assert call("GET", f"/v1/coupons/{code}", headers=auth(key)).status_code == 200
    assert call("GET", f"/v1/no/such/{code}", headers=auth(key)).status_code == 404
    assert call("POST", "/v1/coupons/apply", json={"code": code}, headers=auth(key)).status_code == 422
    assert call("GET", f"/v1/coupons/{code}").status_code == 401

    def scrape() -> list[tuple[str, dict[str, str], float]]:
        response = call("GET", "/metrics")  # no key needed
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return samples(response.text)

    def counted() -> list[tuple[str, dict[str, str], float]] | None:
        found = scrape()  # the last request's counts land just after its response: poll briefly
        ok = value(found, "coupon_ledger_http_requests_total", route="/v1/coupons/{code}", status="401") == 1
        return found if ok else None

    wait_for(counted, 10, interval=0.2, message="the 401 counted")
    for _ in range(4):  # whichever worker answers, the same sums
        found = scrape()
        assert value(found, "coupon_ledger_redemptions_total") == APPLIES
        assert value(found, "coupon_ledger_refusals_total", code="MIN_ORDER_NOT_MET") == REFUSALS
        apply_route = {"method": "POST", "route": "/v1/coupons/apply"}
        assert value(found, "coupon_ledger_http_requests_total", **apply_route, status="201") == APPLIES + 1
        assert value(found, "coupon_ledger_http_requests_total", **apply_route, status="422") == REFUSALS + 1
        assert value(found, "coupon_ledger_http_requests_total", route="/v1/coupons/{code}", status="200") == 1
        assert value(found, "coupon_ledger_http_requests_total", route="unmatched", status="404") == 1
        timed = value(found, "coupon_ledger_http_request_duration_seconds_count", **apply_route)
        assert timed == APPLIES + 1 + REFUSALS + 1
        assert value(found, "coupon_ledger_events_saved_total", type="Coupon.Redeemed") == APPLIES
        assert value(found, "coupon_ledger_writer_batch_commands_count") >= 1
        assert value(found, "coupon_ledger_writer_commit_seconds_count") >= 1
        names = {name for name, _, _ in found}
        assert {"coupon_ledger_projection_lag_events", "coupon_ledger_holds_live"} <= names
        assert all(name.startswith("coupon_ledger_") for name in names), sorted(names)
        label_values = {v for _, labels, _ in found for v in labels.values()}
        for private in (code, retailer["retailer_id"], customer, key, retailer["publishable_key"]):
            assert not any(private in v for v in label_values), private

    serve.stop()
    assert serve.process.returncode == 0, serve.stderr()
    lines = [line for line in serve.stderr().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line of every process is JSON
    access = [line for line in parsed if line.get("logger") == "coupon_ledger.access"]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for line in access:
        by_id.setdefault(line["request_id"], []).append(line)
    assert len(access) == len(responses)  # exactly one line per request, none from uvicorn
    for response in responses:
        (line,) = by_id[response.headers["x-request-id"]]
        assert line["status"] == response.status_code
        assert line["method"] == response.request.method
        assert isinstance(line["duration_ms"], float | int) and line["duration_ms"] >= 0
        assert line["client"] == "127.0.0.1"
    routes = {(line["route"], line["status"]) for line in access}
    assert {("/v1/coupons/apply", 201), ("/v1/coupons/{code}", 200), ("unmatched", 404)} <= routes
    assert {("/v1/coupons/apply", 422), ("/v1/coupons/{code}", 401), ("/metrics", 200), ("/healthz", 200)} <= routes
    keyed = [line for line in access if line["route"] == "/v1/coupons/apply"]
    assert all(line["key_id"].startswith("key_") for line in keyed if line["status"] == 201)
    assert all(line["key_id"] is None for line in access if line["status"] == 401)
    assert len({line["pid"] for line in access}) <= 2  # two workers
    text = serve.stderr()
    for private in (key, key[3:], code, retailer["publishable_key"]):
        assert private not in text


def test_metrics_and_the_access_log_can_be_turned_off(database_url: str, tmp_path: Path) -> None:
    server = Serve(database_url, tmp_path, env={"COUPON_LEDGER_METRICS": "off", "COUPON_LEDGER_ACCESS_LOG": "off"})
    try:
        wait_for(server.healthy, 60, message="serve healthy")
        for _ in range(3):
            assert httpx.get(f"{server.base_url}/v1/nothing", timeout=10).status_code == 404
        scraped = samples(httpx.get(f"{server.base_url}/metrics", timeout=10).text)
        assert not any(name.startswith("coupon_ledger_http_") for name, _, _ in scraped)
        assert value(scraped, "coupon_ledger_projection_lag_events") == 0  # read at scrape time, still there
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.stderr().splitlines() if line.strip()]
    assert lines  # start-up and shutdown lines, as JSON
    assert not [line for line in lines if line.get("logger") == "coupon_ledger.access"]


def worker_pids(serve_pid: int) -> list[int]:
    """serve's uvicorn workers: its children started by multiprocessing's spawn."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if stat[0] != "Z" and int(stat[1]) == serve_pid and b"spawn_main" in argv:
            found.append(int(entry.name))
    return sorted(found)


def test_a_replaced_worker_is_marked_dead_and_its_counts_still_add_up(
    database_url: str, retailer: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "metrics"  # given by the operator: emptied at start
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"a previous run's")
    server = Serve(database_url, tmp_path, "--workers", "2", env={"PROMETHEUS_MULTIPROC_DIR": str(folder)})
    try:
        wait_for(server.healthy, 60, message="serve healthy")
        assert not (folder / "counter_1.db").exists()

        def two_workers() -> list[int] | None:
            found = worker_pids(server.process.pid)
            return found if len(found) == 2 else None

        workers = wait_for(two_workers, 30, message="two workers")
        key = retailer["api_key"]
        code = f"KILLED{uuid4().hex[:6].upper()}"
        body = {"code": code, "discount_type": "percentage", "discount_value": "10"}
        assert httpx.post(f"{server.base_url}/v1/coupons", json=body, headers=auth(key), timeout=30).status_code == 201
        for _ in range(6):
            applied = httpx.post(
                f"{server.base_url}/v1/coupons/apply", json={"code": code, "subtotal": "20"}, headers=auth(key)
            )
            assert applied.status_code == 201, applied.text
        assert all((folder / f"gauge_livesum_{pid}.db").exists() for pid in workers)

        victim = workers[0]
        os.kill(victim, signal.SIGKILL)

        def replaced() -> list[int] | None:
            now = worker_pids(server.process.pid)
            return now if len(now) == 2 and victim not in now else None

        replacement = next(pid for pid in wait_for(replaced, 30, message="a new worker") if pid not in workers)
        wait_for(lambda: not (folder / f"gauge_livesum_{victim}.db").exists(), 10, message="the dead worker marked")
        wait_for(lambda: (folder / f"gauge_livesum_{replacement}.db").exists(), 30, message="the new worker's gauges")
        for _ in range(4):
            found = samples(httpx.get(f"{server.base_url}/metrics", timeout=10).text)
            assert value(found, "coupon_ledger_redemptions_total") == 6  # the dead worker's share included
    finally:
        server.stop()
