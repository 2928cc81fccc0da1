"""GET /metrics in-process: Prometheus text, no key needed, names prefixed, counts by route template
(the routed and the directly served apply alike), bounded labels; a 500's log line carries the
request id its body carries."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Iterator
from uuid import uuid4

import pytest
import structlog
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from structlog.contextvars import clear_contextvars

import api.logs
from api.app import create_app
from api.logs import configure_logging
from api.settings import Settings
from tests.support.http import Api

Samples = list[tuple[str, dict[str, str], float]]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(response.text) for s in f.samples]


def value(found: Samples, name: str, **labels: str) -> float:
    return sum(v for n, lab, v in found if n == name and all(lab.get(k) == want for k, want in labels.items()))


def test_requests_are_counted_by_route_template_and_no_label_names_a_tenant(api: Api, client: TestClient) -> None:
    code = f"METRICS{uuid4().hex[:6].upper()}"
    customer = f"c-{uuid4().hex[:8]}"
    api.create_coupon(code, max_uses=2)
    before = scrape(client)
    assert api.apply(code, "100.00", customer_id=customer).status_code == 201
    assert api.apply(code, "100.00", customer_id=customer).status_code == 201
    assert api.apply(code, "100.00", customer_id=customer).json()["error"]["code"] == "USAGE_LIMIT_REACHED"
    assert api.get(f"/v1/coupons/{code}").status_code == 200
    assert client.request("BREW", f"/v1/coupons/{code}").status_code in (404, 405)
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    apply = {"method": "POST", "route": "/v1/coupons/apply"}
    assert grew("coupon_ledger_http_requests_total", **apply, status="201") == 2
    assert grew("coupon_ledger_http_requests_total", **apply, status="422") == 1
    assert grew("coupon_ledger_http_requests_total", method="GET", route="/v1/coupons/{code}", status="200") == 1
    assert grew("coupon_ledger_http_requests_total", method="OTHER") == 1  # any method: a bounded label
    assert grew("coupon_ledger_redemptions_total") == 2
    assert grew("coupon_ledger_refusals_total", code="USAGE_LIMIT_REACHED") == 1
    assert grew("coupon_ledger_http_request_duration_seconds_count", **apply) == 3
    names = {name for name, _, _ in after}
    assert all(name.startswith("coupon_ledger_") for name in names), sorted(names)
    assert {
        "coupon_ledger_projection_lag_events",
        "coupon_ledger_projection_lag_seconds",
        "coupon_ledger_holds_live",
        "coupon_ledger_writer_queue_depth",
    } <= names
    labels = {v for _, lab, v in after for v in lab.values()}
    for private in (code, str(api.retailer_id), customer, api.api_key):
        assert not any(private in label for label in labels)


def test_live_holds_are_read_from_the_read_model_at_scrape_time(api: Api, client: TestClient) -> None:
    code = f"HOLDS{uuid4().hex[:6].upper()}"
    api.create_coupon(code)
    before = value(scrape(client), "coupon_ledger_holds_live")
    held = api.post("/v1/coupons/reserve", json={"code": code, "subtotal": "100.00", "ttl_seconds": 600})
    assert held.status_code == 201, held.text
    # The read model shows the hold once the projection has it (GET /v1/coupons waits for that).
    assert api.get("/v1/coupons").status_code == 200
    assert value(scrape(client), "coupon_ledger_holds_live") == before + 1


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    monkeypatch.setattr(api.logs, "_access", None)  # put back afterwards: later apps log as before
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hooks = (sys.excepthook, threading.excepthook)
    out = io.StringIO()
    configure_logging(Settings(log_format="json"), out)
    try:
        yield out
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        sys.excepthook, threading.excepthook = hooks
        logging.captureWarnings(False)
        structlog.reset_defaults()
        clear_contextvars()


def test_a_500_is_logged_with_the_request_id_of_its_body(e2e_database_url: str, logged: io.StringIO) -> None:
    app: FastAPI = create_app(Settings(database_url=e2e_database_url))

    @app.get("/v1/boom/{code}")
    async def boom(code: str, request: Request) -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/v1/boom/SECRETCODE1")
    assert response.status_code == 500
    request_id = response.json()["error"]["request_id"]
    assert request_id == response.headers["x-request-id"]
    lines = [json.loads(line) for line in logged.getvalue().splitlines()]
    (error,) = [line for line in lines if line.get("level") == "error" and "exception" in line]
    assert error["request_id"] == request_id
    assert "RuntimeError: a bug" in error["exception"]
    (access,) = [line for line in lines if line.get("logger") == "coupon_ledger.access"]
    assert access["request_id"] == request_id and access["status"] == 500 and access["route"] == "/v1/boom/{code}"
    server_lines = [line for line in lines if line.get("logger") != "httpx"]  # httpx: the test's own client
    assert "SECRETCODE1" not in json.dumps(server_lines)
