"""`coupon-ledger backup` and `restore`, run as the real command in subprocesses on PostgreSQL: a
restored store holds everything (events and their chains, read models, retailers and keys, the
signing key), still proves an auditor's digest, is still append-only, and a store that holds
events is never overwritten without --replace."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.support.http import new_retailer
from tests.support.postgres import Server, auth, fresh_database, head, run_cli

pytestmark = pytest.mark.slow


def table_fingerprints(url: str) -> dict[str, tuple[int, str]]:
    """Every table of the database: its row count and an md5 of its rows in a fixed order."""
    with psycopg.connect(url) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            ).fetchall()
        ]
        prints = {}
        for table in tables:
            row = conn.execute(
                f"SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM \"{table}\" t"  # type: ignore[arg-type]
            ).fetchone()
            assert row is not None
            prints[table] = (int(row[0]), str(row[1]))
    return prints


def log_summary(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT originator_id), coalesce(max(notification_id), 0) FROM ledger_events"
        ).fetchone()
    assert row is not None
    return {"events": row[0], "streams": row[1], "position": row[2]}


def assert_append_only(url: str) -> None:
    """UPDATE and DELETE of a recorded event are refused by the database itself."""
    newest = "(SELECT max(notification_id) FROM ledger_events)"
    for statement in (
        f"UPDATE ledger_events SET state = state || '\\x00'::bytea WHERE notification_id = {newest}",
        f"DELETE FROM ledger_events WHERE notification_id = {newest}",
    ):
        with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)  # type: ignore[arg-type]


def busy_store(url: str) -> dict[str, Any]:
    """A store with coupons, redemptions, a reversal and a campaign, made over the API; answers the
    retailer's key, its signed digest and its coupons as listed."""
    app = create_app(Settings(database_url=url))
    with TestClient(app) as client:
        api = new_retailer(app, client, "backed-up")
        api.create_coupon("SAVE10", max_uses=5)
        first = api.apply("SAVE10", "100.00", key="order-1", customer_id="c-1")
        assert first.status_code == 201, first.text
        assert api.apply("SAVE10", "50.00", key="order-2", customer_id="c-2").status_code == 201
        reversed_ = api.post(f"/v1/redemptions/{first.json()['redemption_id']}/reverse")
        assert reversed_.status_code == 200, reversed_.text
        campaign = api.post(
            "/v1/campaigns",
            json={
                "name": "Winter",
                "prefix": "WIN-",
                "count": 3,
                "coupon": {"discount_type": "fixed", "discount_value": "5.00", "max_uses": 2},
                "max_redemptions": 4,
            },
        )
        assert campaign.status_code == 201, campaign.text
        codes = [c["code"] for c in api.get(f"/v1/campaigns/{campaign.json()['id']}/coupons").json()["data"]]
        assert api.apply(codes[0], "30.00", key="order-3").status_code == 201
        digest = api.get("/v1/audit/digest").json()
        coupons = api.get("/v1/coupons", params={"limit": 100}).json()["data"]
        public_key = api.get("/v1/audit/public-key").json()
    return {"api_key": api.api_key, "digest": digest, "coupons": coupons, "public_key": public_key}


def test_a_restored_store_holds_everything_and_proves_the_digest_taken_before_the_backup(
    database_url: str, server_url: str, tmp_path: Path
) -> None:
    store = busy_store(database_url)
    digest_file = tmp_path / "digest.json"
    digest_file.write_text(json.dumps(store["digest"]))
    archive = tmp_path / "store.dump"

    backed_up = run_cli(database_url, "backup", str(archive))

    assert backed_up.returncode == 0, backed_up.stderr
    summary = json.loads(backed_up.stdout)
    assert summary == {"file": str(archive), **log_summary(database_url)}
    assert summary["events"] >= 10 and summary["position"] == head(database_url)
    source = table_fingerprints(database_url)
    with fresh_database(server_url, prefix="restored") as target:
        restored = run_cli(target, "restore", str(archive))

        assert restored.returncode == 0, restored.stderr
        assert json.loads(restored.stdout) == summary
        # Every table, row for row: events with their chains, snapshots, tracking, read models,
        # retailers and hashed keys, and the signing key.
        assert table_fingerprints(target) == source
        assert source["audit_signing_key"][0] == 1 and source["api_keys"][0] >= 2
        assert_append_only(target)

        verified = run_cli(target, "verify", "--digest", str(digest_file))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "VIOLATION" not in verified.stdout

        app = create_app(Settings(database_url=target))
        with TestClient(app) as client:  # the retailer's key works on the restored store
            headers = auth(store["api_key"])
            again = client.get("/v1/audit/digest", params={"position": store["digest"]["position"]}, headers=headers)
            assert again.status_code == 200, again.text
            fields = ("position", "events", "streams", "root", "retailer_id")
            assert {k: again.json()[k] for k in fields} == {k: store["digest"][k] for k in fields}
            assert client.get("/v1/audit/public-key", headers=headers).json() == store["public_key"]
            listed = client.get("/v1/coupons", params={"limit": 100}, headers=headers).json()["data"]
            assert listed == store["coupons"]
            assert [c["uses_count"] for c in listed if c["code"] == "SAVE10"] == [1]
            # The restored store takes new writes after the archive's position, its chains go on.
            body = {"code": "SAVE10", "subtotal": "80.00"}
            assert client.post("/v1/coupons/apply", json=body, headers=headers).status_code == 201
        assert head(target) > summary["position"]
        verified = run_cli(target, "verify", "--digest", str(digest_file))
        assert verified.returncode == 0, verified.stdout + verified.stderr


def test_restore_refuses_a_store_that_holds_events_unless_told_to_replace_it(
    database_url: str, server_url: str, tmp_path: Path
) -> None:
    busy_store(database_url)
    archive = tmp_path / "store.dump"
    assert run_cli(database_url, "backup", str(archive)).returncode == 0
    with fresh_database(server_url, prefix="occupied") as target:
        busy_store(target)  # another store, with events of its own
        before = table_fingerprints(target)

        refused = run_cli(target, "restore", str(archive))

        assert refused.returncode == 1
        assert "already holds" in refused.stderr and "--replace" in refused.stderr
        assert refused.stdout == ""
        assert table_fingerprints(target) == before

        # All or nothing: a restore that fails half-way (an analyst's view stops the events table
        # from being dropped) leaves the store as it was.
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("CREATE VIEW analyst_counts AS SELECT count(*) FROM ledger_events")
        failed = run_cli(target, "restore", "--replace", str(archive))
        assert failed.returncode == 1
        assert "nothing was changed" in failed.stderr and "analyst_counts" in failed.stderr
        assert table_fingerprints(target) == before
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("DROP VIEW analyst_counts")

        replaced = run_cli(target, "restore", "--replace", str(archive))

        assert replaced.returncode == 0, replaced.stderr
        assert table_fingerprints(target) == table_fingerprints(database_url)
        assert_append_only(target)
        assert run_cli(target, "verify").returncode == 0


def test_backup_refuses_to_overwrite_a_file_and_restore_refuses_what_is_not_an_archive(
    database_url: str, tmp_path: Path
) -> None:
    existing = tmp_path / "kept.dump"
    existing.write_text("an earlier backup")
    refused = run_cli(database_url, "backup", str(existing))
    assert refused.returncode == 1 and "--overwrite" in refused.stderr
    assert existing.read_text() == "an earlier backup"
    assert run_cli(database_url, "backup", "--overwrite", str(existing)).returncode == 0

    not_archive = tmp_path / "notes.txt"
    not_archive.write_text("hello")
    before = table_fingerprints(database_url)
    damaged = tmp_path / "damaged.dump"
    damaged.write_bytes((tmp_path / "kept.dump").read_bytes()[:2000])
    for path in (not_archive, tmp_path / "missing.dump", damaged):
        result = run_cli(database_url, "restore", "--replace", str(path))
        assert result.returncode == 2, result.stderr
        assert str(path) in result.stderr
    assert table_fingerprints(database_url) == before


def test_a_backup_taken_while_serve_writes_is_one_consistent_moment_of_the_log(
    database_url: str, server_url: str, tmp_path: Path
) -> None:
    created = run_cli(database_url, "retailer", "create", "Busy Shop")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["api_key"]
    server = Server(database_url, tmp_path, "writing")
    stop = threading.Event()
    written: list[int] = []

    def write() -> None:
        with httpx.Client(base_url=server.base_url, headers=auth(key), timeout=30) as client:
            while not stop.is_set():
                code = f"LIVE-{len(written)}"
                body = {"code": code, "discount_type": "fixed", "discount_value": "1.00", "max_uses": 3}
                assert client.post("/v1/coupons", json=body).status_code == 201
                assert client.post("/v1/coupons/apply", json={"code": code, "subtotal": "10.00"}).status_code == 201
                written.append(1)

    try:
        server.wait_healthy()
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        while len(written) < 5:
            stop.wait(0.05)
        archive = tmp_path / "live.dump"
        before = len(written)
        backed_up = run_cli(database_url, "backup", str(archive))
        during = len(written) - before
        stop.set()
        writer.join(30)
    finally:
        stop.set()
        server.terminate()
    assert backed_up.returncode == 0, backed_up.stderr
    assert during > 0, "no write happened while the backup ran"
    summary = json.loads(backed_up.stdout)
    assert summary["position"] < head(database_url)  # the log went on after the snapshot
    with fresh_database(server_url, prefix="live") as target:
        restored = run_cli(target, "restore", str(archive))
        assert restored.returncode == 0, restored.stderr
        assert json.loads(restored.stdout) == summary
        # Every coupon's chain whole, every redemption on its coupon, the read model equal to the
        # events through its tracking position: one moment, not a mix.
        verified = run_cli(target, "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
