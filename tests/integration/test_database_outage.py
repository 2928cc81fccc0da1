"""PostgreSQL stops under load and comes back: every request is answered 201 or 503 (with
Retry-After) in bounded time, /readyz says why, the service resumes by itself, and every
acknowledged redemption is in the event log."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
import psycopg
import pytest

from api.database import start_embedded, stop_embedded
from tests.support.postgres import (
    Server,
    auth,
    create_coupon,
    embedded_data_dir,
    redeemed_events,
    run_cli,
    wait_for,
)

pytestmark = pytest.mark.slow

ANSWER_WITHIN = 10.0  # seconds: no request may take longer, database or not
CLIENTS = 8


@dataclass
class Answer:
    key: str
    status: int | None  # None: no HTTP answer at all
    seconds: float
    body: dict[str, object]
    retry_after: str | None
    at: float


@pytest.fixture
def embedded() -> Iterator[tuple[Path, str]]:
    """An embedded PostgreSQL of the test's own, which it stops and starts again."""
    with embedded_data_dir("outage") as data_dir:
        url = start_embedded(data_dir)
        yield data_dir, url
        stop_embedded(data_dir)


def apply(client: httpx.Client, key: str) -> Answer:
    started = time.monotonic()
    try:
        response = client.post(
            "/v1/coupons/apply", json={"code": "OUTAGE", "subtotal": "20.00"}, headers={"Idempotency-Key": key}
        )
    except httpx.HTTPError as error:
        return Answer(key, None, time.monotonic() - started, {"transport": repr(error)}, None, started)
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    return Answer(
        key, response.status_code, time.monotonic() - started, body, response.headers.get("Retry-After"), started
    )


def test_requests_during_an_outage_are_503_in_bounded_time_and_nothing_acknowledged_is_lost(
    embedded: tuple[Path, str], tmp_path: Path
) -> None:
    data_dir, url = embedded
    created = run_cli(url, "retailer", "create", "outage shop")
    assert created.returncode == 0, created.stderr
    api_key = json.loads(created.stdout.strip().splitlines()[-1])["api_key"]
    server = Server(url, tmp_path, "outage")
    try:
        server.wait_healthy()
        coupon = create_coupon(server, api_key, "OUTAGE", None)
        answers: list[Answer] = []
        lock = threading.Lock()
        stop = threading.Event()

        def load(worker: int) -> None:
            with httpx.Client(base_url=server.base_url, headers=auth(api_key), timeout=ANSWER_WITHIN + 20) as client:
                n = 0
                while not stop.is_set():
                    answer = apply(client, f"w{worker}-{n}")
                    n += 1
                    with lock:
                        answers.append(answer)
                    if answer.status != 201:
                        time.sleep(0.05)

        workers = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(CLIENTS)]
        for worker in workers:
            worker.start()
        time.sleep(1.5)

        outage_started = time.monotonic()
        stop_embedded(data_dir)  # the test is the server's only user: this stops PostgreSQL (fast mode)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2).close()
        time.sleep(1.0)
        started = time.monotonic()
        ready = httpx.get(f"{server.base_url}/readyz", timeout=ANSWER_WITHIN + 20)
        assert time.monotonic() - started < ANSWER_WITHIN
        assert ready.status_code == 503, ready.text
        assert ready.headers["Retry-After"]
        error = ready.json()["error"]
        assert error["code"] == "SERVICE_UNAVAILABLE"
        assert error["details"]["reason"] == "database_unavailable"
        assert "database" in error["message"]
        started = time.monotonic()
        read = httpx.get(f"{server.base_url}/v1/coupons/OUTAGE", headers=auth(api_key), timeout=ANSWER_WITHIN + 20)
        assert time.monotonic() - started < ANSWER_WITHIN
        assert read.status_code == 503 and read.headers["Retry-After"], read.text
        time.sleep(2.0)

        assert start_embedded(data_dir) == url  # the same folder, the same socket
        outage_ended = time.monotonic()
        wait_for(
            lambda: httpx.get(f"{server.base_url}/readyz", timeout=ANSWER_WITHIN).status_code == 200,
            20,
            interval=0.2,
            message="/readyz to say ready again",
        )
        wait_for(
            lambda: any(a.status == 201 and a.at > outage_ended for a in list(answers)),
            20,
            message="redemptions to succeed again without restarting serve",
        )
        time.sleep(1.0)
        stop.set()
        for worker in workers:
            worker.join(ANSWER_WITHIN + 30)
        assert server.process.poll() is None, "serve kept running through the outage"

        assert [a for a in answers if a.status not in (201, 503)] == []
        assert [a for a in answers if a.seconds > ANSWER_WITHIN] == []
        unavailable = [a for a in answers if a.status == 503]
        assert any(outage_started <= a.at <= outage_ended for a in unavailable), "precondition: the outage was felt"
        for answer in unavailable:
            assert answer.body["error"]["code"] == "SERVICE_UNAVAILABLE", answer  # type: ignore[index]
            assert answer.retry_after is not None and int(answer.retry_after) >= 1
        acknowledged = {a.key: a.body["redemption_id"] for a in answers if a.status == 201}
        assert len(acknowledged) > CLIENTS

        # Every key answered 503 is retried once, now that the database is back: it is stored now, or
        # was stored after all (a save whose commit could not be confirmed) and is replayed.
        with httpx.Client(base_url=server.base_url, headers=auth(api_key), timeout=30) as client:
            for key in sorted({a.key for a in unavailable} - set(acknowledged)):
                retried = apply(client, key)
                assert retried.status == 201, retried
                acknowledged[key] = retried.body["redemption_id"]

        keys = {a.key for a in answers}
        assert set(acknowledged) == keys
        uses = httpx.get(f"{server.base_url}/v1/coupons/OUTAGE", headers=auth(api_key), timeout=30).json()
        assert uses["uses_count"] == len(keys)
        assert redeemed_events(url, UUID(coupon["id"])) == len(keys)
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(DISTINCT originator_id) FROM ledger_events WHERE originator_id = ANY(%s)",
                ([UUID(str(r)) for r in acknowledged.values()],),
            ).fetchone()
        assert row is not None and row[0] == len(keys), "every acknowledged redemption is in the event log"
    finally:
        server.terminate()
