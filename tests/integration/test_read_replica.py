"""`serve` with DATABASE_REPLICA_URL on a real streaming hot standby (tests/support/replica.py): the
read-model routes read from the standby once it has replayed what the request must reflect, fall
back to the primary within COUPON_LEDGER_REPLICA_WAIT_SECONDS when it has not, and keep answering
200 when the standby is down."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg.conninfo import make_conninfo

from api.database import apply_schema
from api.replica import REPLICA_APPLICATION_NAME
from tests.support.postgres import Server, auth, create_coupon, free_port, run_cli, wait_for
from tests.support.replica import ReplicatedPostgres, replicated_postgres

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair() -> Iterator[ReplicatedPostgres]:
    with replicated_postgres() as started:
        yield started


@pytest.fixture
def dbname(pair: ReplicatedPostgres) -> Iterator[str]:
    with pair.database() as name:
        apply_schema(pair.primary.url(name))
        pair.wait_replayed()
        yield name


def serve(pair: ReplicatedPostgres, dbname: str, tmp_path: Path, wait_seconds: float) -> Server:
    server = Server(
        pair.primary.url(dbname),
        tmp_path,
        "replica-server",
        env={
            "DATABASE_REPLICA_URL": pair.standby.url(dbname),
            "COUPON_LEDGER_REPLICA_WAIT_SECONDS": str(wait_seconds),
        },
    )
    server.wait_healthy()
    return server


def retailer_key(pair: ReplicatedPostgres, dbname: str) -> str:
    created = run_cli(pair.primary.url(dbname), "retailer", "create", "Replica Shop")
    assert created.returncode == 0, created.stderr
    key: str = json.loads(created.stdout.strip().splitlines()[-1])["api_key"]
    return key


def apply(server: Server, key: str, code: str) -> dict[str, Any]:
    response = httpx.post(
        f"{server.base_url}/v1/coupons/apply", json={"code": code, "subtotal": "80.00"}, headers=auth(key), timeout=30
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def get(server: Server, key: str, path: str, **params: str) -> httpx.Response:
    response = httpx.get(f"{server.base_url}{path}", params=params, headers=auth(key), timeout=30)
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
    return response


def listed_uses(server: Server, key: str, code: str) -> int:
    data = get(server, key, "/v1/coupons").json()["data"]
    return next(int(c["uses_count"]) for c in data if c["code"] == code)


def standby_reads_of_coupons(pair: ReplicatedPostgres, dbname: str) -> int:
    """Scans of the `coupons` table made on the standby (its own statistics: nothing run on the
    primary counts here; the tests' probes never read that table on the standby)."""
    return int(
        pair.standby.scalar(
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'coupons'",
            dbname=dbname,
        )
    )


def replica_sessions(pair: ReplicatedPostgres, dbname: str) -> int:
    return int(
        pair.standby.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND datname = %s",
            (REPLICA_APPLICATION_NAME, dbname),
        )
    )


def test_reads_right_after_writes_are_served_by_the_replica_and_reflect_the_writes(
    pair: ReplicatedPostgres, dbname: str, tmp_path: Path
) -> None:
    key = retailer_key(pair, dbname)
    server = serve(pair, dbname, tmp_path, wait_seconds=2.0)
    try:
        create_coupon(server, key, "REPLICA10", None)
        before = standby_reads_of_coupons(pair, dbname)
        for uses in range(1, 11):
            redemption = apply(server, key, "REPLICA10")
            assert listed_uses(server, key, "REPLICA10") == uses  # at once, through the standby
            one = get(server, key, f"/v1/redemptions/{redemption['redemption_id']}").json()
            assert one["discount_amount"] == redemption["discount_amount"]
            assert len(get(server, key, "/v1/redemptions", code="REPLICA10").json()["data"]) == uses
        today = time.strftime("%Y-%m-%d", time.gmtime())
        daily = get(server, key, "/v1/analytics/daily", **{"from": today, "to": today, "group_by": "coupon"})
        assert daily.json()["data"][0]["redemptions"] == 10

        assert replica_sessions(pair, dbname) >= 1
    finally:
        server.terminate()
    # The server's sessions on the standby flush their statistics as they end.
    wait_for(
        lambda: standby_reads_of_coupons(pair, dbname) >= before + 10,
        10,
        interval=0.2,
        message="the standby to count the ten list reads",
    )


def test_with_replay_paused_a_read_after_a_write_falls_back_to_the_primary_within_the_bound(
    pair: ReplicatedPostgres, dbname: str, tmp_path: Path
) -> None:
    key = retailer_key(pair, dbname)
    server = serve(pair, dbname, tmp_path, wait_seconds=0.3)
    try:
        create_coupon(server, key, "PAUSED", None)
        assert listed_uses(server, key, "PAUSED") == 0
        pair.pause_replay()
        try:
            for uses in range(1, 4):
                time.sleep(1.1)  # past any back-off of an earlier missed bound: this read asks the standby first
                apply(server, key, "PAUSED")
                started = time.monotonic()
                assert listed_uses(server, key, "PAUSED") == uses  # the standby still says uses - 1
                elapsed = time.monotonic() - started
                assert 0.3 <= elapsed < 3.0, elapsed  # it waited for the standby first, then read the primary
            assert pair.standby.scalar("SELECT count(*) FROM coupons", dbname=dbname) == 1
            stale = pair.standby.scalar("SELECT uses_count FROM coupons WHERE code = 'PAUSED'", dbname=dbname)
            assert stale == 0  # what the replica would have answered
        finally:
            pair.resume_replay()
        apply(server, key, "PAUSED")
        assert listed_uses(server, key, "PAUSED") == 4
    finally:
        server.terminate()


def test_with_the_standby_stopped_reads_answer_from_the_primary_and_return_to_the_standby(
    pair: ReplicatedPostgres, dbname: str, tmp_path: Path
) -> None:
    key = retailer_key(pair, dbname)
    server = serve(pair, dbname, tmp_path, wait_seconds=0.3)
    try:
        create_coupon(server, key, "DOWN", None)
        assert listed_uses(server, key, "DOWN") == 0
        pair.standby.stop()
        try:
            for uses in range(1, 6):
                apply(server, key, "DOWN")
                started = time.monotonic()
                assert listed_uses(server, key, "DOWN") == uses
                assert len(get(server, key, "/v1/redemptions").json()["data"]) == uses
                assert time.monotonic() - started < 3.0
            assert get(server, key, "/v1/campaigns").json()["data"] == []
        finally:
            pair.standby.start()
        pair.wait_replayed()
        before = standby_reads_of_coupons(pair, dbname)

        def served_by_standby() -> bool:
            assert listed_uses(server, key, "DOWN") == 5
            return standby_reads_of_coupons(pair, dbname) > before

        wait_for(served_by_standby, 30, interval=0.5, message="reads to return to the standby")
    finally:
        server.terminate()


def test_with_the_replica_unreachable_from_the_start_the_server_starts_and_reads_from_the_primary(
    database_url: str, tmp_path: Path
) -> None:
    created = run_cli(database_url, "retailer", "create", "No Replica Shop")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout.strip().splitlines()[-1])["api_key"]
    nobody = make_conninfo(host="127.0.0.1", port=free_port(), user="postgres", dbname="nothing")
    server = Server(database_url, tmp_path, "no-replica", env={"DATABASE_REPLICA_URL": nobody})
    try:
        server.wait_healthy()
        create_coupon(server, key, "NOREPLICA", None)
        for uses in range(1, 4):
            apply(server, key, "NOREPLICA")
            started = time.monotonic()
            assert listed_uses(server, key, "NOREPLICA") == uses
            assert time.monotonic() - started < 3.0
    finally:
        server.terminate()
