"""Stopping `coupon-ledger serve` on its embedded PostgreSQL: SIGTERM and SIGINT stop the API (in-flight
requests finish), its projection process and the embedded server, and exit 0; a second signal ends it at
once; after a SIGKILL the next start stops the PostgreSQL left behind. Other commands on the same folder
leave no server behind, and never stop the one a running serve uses."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from api.database import stop_postmaster
from tests.support.postgres import (
    Server,
    auth,
    create_coupon,
    embedded_data_dir,
    postgres_pids,
    projection_children,
    run_cli,
    wait_for,
)

pytestmark = pytest.mark.slow

EXIT_WITHIN = 20.0  # seconds from the signal to the exit of serve


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    """One data folder for the module (initdb once); whatever a failed test left running is stopped."""
    with embedded_data_dir("shutdown") as folder:
        yield folder


@pytest.fixture
def pgdata(data_dir: Path) -> Iterator[Path]:
    folder = data_dir / "pgdata"
    yield folder
    stop_postmaster(folder)  # a failed test leaves nothing to the next one


def start(data_dir: Path, log_dir: Path, name: str, *args: str) -> Server:
    server = Server(None, log_dir, name, data_dir=data_dir, args=args)
    server.wait_healthy(60)
    return server


def new_retailer(data_dir: Path) -> str:
    """A retailer created by `retailer create` on the running serve's embedded server; its key."""
    created = run_cli(None, "retailer", "create", f"shop-{uuid4().hex[:8]}", data_dir=data_dir)
    assert created.returncode == 0, created.stderr
    key: str = json.loads(created.stdout.strip().splitlines()[-1])["api_key"]
    return key


def assert_stopped_cleanly(server: Server, pgdata: Path, signum: int) -> None:
    serve_pid = server.process.pid
    assert projection_children(serve_pid), "precondition: serve runs its projection process"
    assert postgres_pids(pgdata), "precondition: the embedded PostgreSQL runs"
    server.process.send_signal(signum)
    assert server.wait_exit(EXIT_WITHIN) == 0, server.log()
    assert postgres_pids(pgdata) == [], server.log()
    assert projection_children(serve_pid) == []
    assert not (pgdata / "postmaster.pid").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_serve_its_projection_process_and_the_embedded_postgres_with_exit_0(
    data_dir: Path, pgdata: Path, tmp_path: Path, signum: int
) -> None:
    server = start(data_dir, tmp_path, "first")
    assert_stopped_cleanly(server, pgdata, signum)

    again = start(data_dir, tmp_path, "again")  # the next start works on the same folder
    assert httpx.get(f"{again.base_url}/readyz", timeout=10).json() == {"status": "ready"}
    assert_stopped_cleanly(again, pgdata, signal.SIGTERM)


def test_a_request_in_flight_at_sigterm_is_answered_before_serve_stops(
    data_dir: Path, pgdata: Path, tmp_path: Path
) -> None:
    server = start(data_dir, tmp_path, "in-flight")
    key = new_retailer(data_dir)
    create_coupon(server, key, "INFLIGHT", None)
    body = json.dumps({"code": "INFLIGHT", "subtotal": "80.00"}).encode()
    signalled = threading.Event()
    begun = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield body[:10]
        begun.set()  # the headers and the first bytes are sent
        signalled.wait(10)
        time.sleep(0.5)  # serve has begun its shutdown
        yield body[10:]

    results: list[httpx.Response | BaseException] = []

    def send() -> None:
        try:
            results.append(
                httpx.post(
                    f"{server.base_url}/v1/coupons/apply",
                    content=slow_body(),
                    headers={**auth(key), "Content-Type": "application/json", "Idempotency-Key": "in-flight-1"},
                    timeout=30,
                )
            )
        except BaseException as error:
            results.append(error)

    client = threading.Thread(target=send)
    client.start()
    assert begun.wait(10)
    time.sleep(0.5)  # and serve has read them: the request is in flight
    server.process.send_signal(signal.SIGTERM)
    signalled.set()
    client.join(30)

    assert len(results) == 1 and isinstance(results[0], httpx.Response), results
    assert results[0].status_code == 201, results[0].text
    assert results[0].json()["discount_amount"] == "8.00"
    assert server.wait_exit(EXIT_WITHIN) == 0, server.log()
    assert postgres_pids(pgdata) == []


def test_a_second_sigterm_ends_a_shutdown_that_waits_for_a_stalled_request(
    data_dir: Path, pgdata: Path, tmp_path: Path
) -> None:
    server = start(data_dir, tmp_path, "second-signal", "--graceful-timeout", "60")
    key = new_retailer(data_dir)  # a valid key: the route then waits for the body it is sent
    release = threading.Event()
    begun = threading.Event()

    def never_finishing_body() -> Iterator[bytes]:
        yield b'{"code": "NOPE", '
        begun.set()  # the headers and the first bytes are sent
        release.wait(60)
        yield b'"subtotal": "1.00"}'

    def send() -> None:
        # Its connection is closed when serve gives up waiting: expected.
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(
                f"{server.base_url}/v1/coupons/apply",
                content=never_finishing_body(),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                timeout=60,
            )

    client = threading.Thread(target=send, daemon=True)
    client.start()
    try:
        assert begun.wait(10)
        time.sleep(0.5)  # serve has read them: the request is in flight
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert server.process.poll() is None, "precondition: the first signal waits for the stalled request"
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.wait_exit(10)
        assert time.monotonic() - started < 10
    finally:
        release.set()
    wait_for(lambda: postgres_pids(pgdata) == [], 10, message="the embedded PostgreSQL to stop")


def test_after_a_sigkill_the_next_serve_stops_the_postgres_left_behind_and_works(
    data_dir: Path, pgdata: Path, tmp_path: Path
) -> None:
    killed = start(data_dir, tmp_path, "killed")
    killed.kill()
    orphans = postgres_pids(pgdata)
    assert orphans, "precondition: a SIGKILL leaves the embedded PostgreSQL running"
    wait_for(lambda: projection_children(killed.process.pid) == [], 10, message="the orphaned project to stop")

    server = start(data_dir, tmp_path, "after-kill")
    assert not set(orphans) & set(postgres_pids(pgdata)), "the server left behind was stopped"
    assert postgres_pids(pgdata), "a new server runs"
    assert "left running" in server.log()
    key = new_retailer(data_dir)
    create_coupon(server, key, "AFTERKILL", None)
    assert_stopped_cleanly(server, pgdata, signal.SIGTERM)


def test_serve_with_two_workers_stops_cleanly_on_sigterm(data_dir: Path, pgdata: Path, tmp_path: Path) -> None:
    server = start(data_dir, tmp_path, "workers", "--workers", "2")
    assert_stopped_cleanly(server, pgdata, signal.SIGTERM)


def test_commands_leave_no_server_behind_and_never_stop_the_one_serve_uses(
    data_dir: Path, pgdata: Path, tmp_path: Path
) -> None:
    assert postgres_pids(pgdata) == []
    for command in (["migrate"], ["retailer", "create", f"alone-{uuid4().hex[:8]}"], ["verify"]):
        done = run_cli(None, *command, data_dir=data_dir)
        assert done.returncode == 0, done.stdout + done.stderr
        assert postgres_pids(pgdata) == [], f"{command} left PostgreSQL running"

    server = start(data_dir, tmp_path, "shared")
    serving = postgres_pids(pgdata)
    for command in (["migrate"], ["retailer", "create", f"beside-{uuid4().hex[:8]}"], ["verify"]):
        done = run_cli(None, *command, data_dir=data_dir)
        assert done.returncode == 0, done.stdout + done.stderr
    assert postgres_pids(pgdata)[:1] == serving[:1], "serve's PostgreSQL kept running"
    assert httpx.get(f"{server.base_url}/readyz", timeout=10).status_code == 200
    assert_stopped_cleanly(server, pgdata, signal.SIGTERM)
