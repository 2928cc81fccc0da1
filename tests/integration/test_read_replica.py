"""`serve` with DATABASE_REPLICA_URL on a real streaming hot standby (tests/support/replica.py): the
read-model routes, and the exports of the event log, read from the standby once it has replayed what
the request must reflect, fall back to the primary within COUPON_LEDGER_REPLICA_WAIT_SECONDS when it
has not, and keep answering 200 when the standby is down."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from api.database import apply_schema, eventsourcing_env, open_ledger
from api.replica import REPLICA_APPLICATION_NAME, ReplicaReads
from ledger.event_store import LedgerRecorder
from ledger.exports import coupon_event_pages, retailer_event_pages, retailer_events
from tests.support import commands
from tests.support.ledger import RETAILER
from tests.support.postgres import Server, auth, create_coupon, free_port, run_cli, wait_for
from tests.support.replica import Node, ReplicatedPostgres, replicated_postgres

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


# The exports' reads of the event log, as pg_stat_statements shows them (LIKE patterns): the
# retailer's log in position order, and one stream's events after a version. The replica's probe
# of its log head (max(notification_id)) matches neither.
AUDIT_READ = "SELECT notification_id, originator_id, %code, prev_hash, hash FROM %WHERE retailer_id = $1%"
COUPON_READ = "SELECT originator_id, originator_version, topic, state, prev_hash, hash FROM %"


@pytest.fixture
def counted_db(pair: ReplicatedPostgres, dbname: str) -> str:
    """``dbname`` with pg_stat_statements readable on both servers (each counts its own statements)."""
    with psycopg.connect(pair.primary.url(dbname), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    pair.wait_replayed()
    return dbname


def export_reads(node: Node, dbname: str) -> tuple[int, int]:
    """(audit export reads, coupon export reads) run on ``node``."""
    return node.statement_calls(dbname, AUDIT_READ), node.statement_calls(dbname, COUPON_READ)


def exports(server: Server, key: str, code: str) -> dict[str, bytes]:
    """Every export of the retailer's log and of the coupon's history, as sent."""
    audit = "/v1/audit/events"
    events = f"/v1/coupons/{code}/events"
    return {
        "audit jsonl": get(server, key, audit, format="jsonl").content,
        "audit csv": get(server, key, audit, format="csv").content,
        "audit json": get(server, key, audit, format="json", limit="1000").content,
        "coupon jsonl": get(server, key, events, format="jsonl").content,
        "coupon csv": get(server, key, events, format="csv").content,
        "coupon json": get(server, key, events, format="json", limit="500").content,
    }


def lines(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.decode().splitlines()]


def test_exports_right_after_writes_are_served_by_the_replica_and_hold_the_writes(
    pair: ReplicatedPostgres, counted_db: str, tmp_path: Path
) -> None:
    key = retailer_key(pair, counted_db)
    server = serve(pair, counted_db, tmp_path, wait_seconds=2.0)
    try:
        create_coupon(server, key, "EXPORTED", None)
        standby_before = export_reads(pair.standby, counted_db)
        primary_before = export_reads(pair.primary, counted_db)
        for uses in range(1, 6):
            apply(server, key, "EXPORTED")
            logged = lines(get(server, key, "/v1/audit/events", format="jsonl").content)
            redeemed = [e for e in logged if e["code"] == "EXPORTED" and e["type"] == "Coupon.Redeemed"]
            assert len(redeemed) == uses  # the write just acknowledged is in the export
            history = get(server, key, "/v1/coupons/EXPORTED/events", format="csv").text.splitlines()
            assert len(history) == 1 + 1 + uses  # header, Created, one Redeemed per apply
            assert history[-1].split(",")[1] == "Coupon.Redeemed"
        standby_after = export_reads(pair.standby, counted_db)
        # Served by the standby: its own statistics count the five audit and five coupon reads...
        assert standby_after[0] - standby_before[0] == 5, (standby_before, standby_after)
        assert standby_after[1] - standby_before[1] == 5, (standby_before, standby_after)
        # ... and the primary ran no export read of its own.
        assert export_reads(pair.primary, counted_db)[0] == primary_before[0]
    finally:
        server.terminate()


def test_with_replay_paused_an_export_after_a_write_falls_back_to_the_primary_within_the_bound(
    pair: ReplicatedPostgres, counted_db: str, tmp_path: Path
) -> None:
    key = retailer_key(pair, counted_db)
    server = serve(pair, counted_db, tmp_path, wait_seconds=0.3)
    try:
        create_coupon(server, key, "LAGGED", None)
        pair.pause_replay()
        try:
            for uses in range(1, 3):
                time.sleep(1.1)  # past any back-off of an earlier missed bound: this export asks the standby first
                apply(server, key, "LAGGED")
                standby_before = export_reads(pair.standby, counted_db)
                primary_before = export_reads(pair.primary, counted_db)
                started = time.monotonic()
                logged = lines(get(server, key, "/v1/audit/events", format="jsonl").content)
                elapsed = time.monotonic() - started
                assert 0.3 <= elapsed < 3.0, elapsed  # it waited for the standby first, then read the primary
                assert [e["type"] for e in logged if e["type"].startswith("Coupon.")][-1] == "Coupon.Redeemed"
                assert sum(e["type"] == "Coupon.Redeemed" for e in logged) == uses
                assert export_reads(pair.standby, counted_db) == standby_before
                assert export_reads(pair.primary, counted_db)[0] == primary_before[0] + 1
                # The coupon's export in the back-off that followed: from the primary at once.
                started = time.monotonic()
                history = lines(get(server, key, "/v1/coupons/LAGGED/events", format="jsonl").content)
                assert time.monotonic() - started < 0.3
                assert [e["type"] for e in history] == ["Coupon.Created"] + ["Coupon.Redeemed"] * uses
                assert export_reads(pair.standby, counted_db) == standby_before
            stale = pair.standby.scalar("SELECT count(*) FROM ledger_events WHERE code = 'LAGGED'", dbname=counted_db)
            assert stale == 1  # what the replica would have answered: the coupon's creation alone
        finally:
            pair.resume_replay()
    finally:
        server.terminate()


def test_exports_send_the_same_bytes_from_the_replica_and_from_the_primary(
    pair: ReplicatedPostgres, counted_db: str, tmp_path: Path
) -> None:
    key = retailer_key(pair, counted_db)
    server = serve(pair, counted_db, tmp_path, wait_seconds=2.0)
    try:
        create_coupon(server, key, "SAMEBYTES", None)
        for _ in range(3):
            apply(server, key, "SAMEBYTES")
        before = export_reads(pair.standby, counted_db)
        from_standby = exports(server, key, "SAMEBYTES")
        assert export_reads(pair.standby, counted_db) == (before[0] + 3, before[1] + 3)
        pair.standby.stop()
        try:
            before = export_reads(pair.primary, counted_db)
            from_primary = exports(server, key, "SAMEBYTES")  # the standby cannot answer: the primary does
            assert export_reads(pair.primary, counted_db)[0] == before[0] + 3
        finally:
            pair.standby.start()
    finally:
        server.terminate()
    assert from_standby == from_primary
    chained = lines(from_standby["coupon jsonl"])
    assert [e["version"] for e in chained] == [1, 2, 3, 4]
    assert all(e["prev_hash"] == p["hash"] for p, e in itertools.pairwise(chained))


def test_a_streamed_export_begun_on_the_replica_reads_every_page_from_it(pair: ReplicatedPostgres, dbname: str) -> None:
    """Pages after the first come from the database the first came from: events the standby has
    not replayed stay out of an export begun on it, while one begun on the primary reads them."""
    ledger = open_ledger(eventsourcing_env(pair.primary.url(dbname)))
    assert isinstance(ledger.recorder, LedgerRecorder)
    replica = ReplicaReads(pair.standby.url(dbname), ledger.name, 2.0, ledger.recorder.events_table_name)
    try:
        commands.create_coupon(ledger, RETAILER, "PAGED", "percentage", Decimal("10"))
        for _ in range(4):
            commands.apply(ledger, RETAILER, "PAGED", Decimal("80.00"))
        logged = len(retailer_events(ledger, RETAILER, 0, 1000))
        assert replica.holds_log(ledger.recorder.max_notification_id())
        history_on_replica = coupon_event_pages(ledger, RETAILER, "PAGED", page_size=2, recorder=replica.recorder)
        log_on_replica = retailer_event_pages(ledger, RETAILER, page_size=2, recorder=replica.recorder)
        history_on_primary = coupon_event_pages(ledger, RETAILER, "PAGED", page_size=2)
        pair.pause_replay()
        try:
            for _ in range(2):
                commands.apply(ledger, RETAILER, "PAGED", Decimal("80.00"))
            assert [e.version for page in history_on_replica for e in page] == [1, 2, 3, 4, 5]
            assert sum(len(page) for page in log_on_replica) == logged
            assert [e.version for page in history_on_primary for e in page] == [1, 2, 3, 4, 5, 6, 7]
        finally:
            pair.resume_replay()
    finally:
        replica.close()
        ledger.close()
