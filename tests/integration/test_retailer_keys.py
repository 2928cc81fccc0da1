"""A lost or leaked API key: `coupon-ledger retailer key NAME [--revoke-others]`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from api.database import apply_schema
from api.key_listener import KeyListener
from api.retailers import Retailers, hash_key, key_id_of
from tests.support.postgres import run_cli, wait_for


def last_json(output: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return parsed


def listed_keys(url: str, name: str) -> list[dict[str, Any]]:
    listed = run_cli(url, "retailer", "keys", name)
    assert listed.returncode == 0, listed.stderr
    return [json.loads(line) for line in listed.stdout.splitlines()]


def parse_time(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


def test_a_new_key_works_beside_the_old_one_and_revoking_others_stops_them_but_keeps_them_listed(
    database_url: str,
) -> None:
    created = run_cli(database_url, "retailer", "create", "Keyed shop")
    assert created.returncode == 0, created.stderr
    first = last_json(created.stdout)

    issued = run_cli(database_url, "retailer", "key", " keyed SHOP ")  # the name as retailer create compares it
    assert issued.returncode == 0, issued.stderr
    second = last_json(issued.stdout)
    assert second["retailer_id"] == first["retailer_id"] and second["revoked_keys"] == 0
    assert second["api_key"] != first["api_key"]

    with ConnectionPool(database_url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        fresh = Retailers(pool)
        assert fresh.authenticate(first["api_key"])[:2] == (UUID(first["retailer_id"]), "secret")
        assert fresh.authenticate(second["api_key"])[:2] == (UUID(first["retailer_id"]), "secret")

        revoked = run_cli(database_url, "retailer", "key", "Keyed shop", "--revoke-others")
        assert revoked.returncode == 0, revoked.stderr
        third = last_json(revoked.stdout)
        assert third["revoked_keys"] == 2

        after = Retailers(pool)  # a process that has not seen the old keys
        assert after.authenticate(first["api_key"]) is None
        assert after.authenticate(second["api_key"]) is None
        assert after.authenticate(third["api_key"])[:2] == (UUID(first["retailer_id"]), "secret")
        # Revoking secret keys leaves the storefront's publishable key working.
        assert after.authenticate(first["publishable_key"])[:2] == (UUID(first["retailer_id"]), "publishable")

    listed = {key["key_id"]: key for key in listed_keys(database_url, "Keyed shop")}
    assert len(listed) == 4  # revocation is history: the revoked rows stay
    for revoked_key in (first["api_key"], second["api_key"]):
        assert listed[key_id_of(hash_key(revoked_key))]["revoked_at"] is not None
    for working in (third["api_key"], first["publishable_key"]):
        assert listed[key_id_of(hash_key(working))]["revoked_at"] is None


def test_a_key_for_a_retailer_that_does_not_exist_is_refused_with_exit_1(database_url: str) -> None:
    refused = run_cli(database_url, "retailer", "key", "nobody")
    assert refused.returncode == 1
    assert "no retailer is named 'nobody'" in refused.stderr
    assert refused.stdout == ""


def test_retailer_create_prints_a_secret_key_and_a_publishable_key_stored_hashed(database_url: str) -> None:
    created = run_cli(database_url, "retailer", "create", "Two-key shop")
    assert created.returncode == 0, created.stderr
    printed = last_json(created.stdout)
    assert set(printed) == {"retailer_id", "api_key", "publishable_key"}
    assert printed["api_key"].startswith("cl_") and printed["publishable_key"].startswith("pk_")
    retailer_id = UUID(printed["retailer_id"])
    rows = scalar_rows(database_url, "SELECT key_hash, kind FROM api_keys WHERE retailer_id = %s", retailer_id)
    assert sorted(rows) == sorted(
        [(hash_key(printed["api_key"]), "secret"), (hash_key(printed["publishable_key"]), "publishable")]
    )
    with ConnectionPool(database_url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        retailers = Retailers(pool)
        assert retailers.authenticate(printed["api_key"])[:2] == (retailer_id, "secret")
        assert retailers.authenticate(printed["publishable_key"])[:2] == (retailer_id, "publishable")
        listener = KeyListener(database_url, retailers).start()
        try:
            assert listener.listening.wait(10)
            assert retailers.authenticate(printed["publishable_key"]) is not None
            remembered = retailers.known(printed["publishable_key"])  # remembered with its kind
            assert remembered is not None and remembered[:2] == (retailer_id, "publishable")
        finally:
            listener.stop()


def test_a_new_publishable_key_revokes_only_publishable_ones(database_url: str) -> None:
    first = last_json(run_cli(database_url, "retailer", "create", "Storefront shop").stdout)
    issued = run_cli(database_url, "retailer", "key", "storefront shop", "--publishable", "--revoke-others")
    assert issued.returncode == 0, issued.stderr
    second = last_json(issued.stdout)
    assert set(second) == {"retailer_id", "publishable_key", "revoked_keys"}
    assert second["publishable_key"].startswith("pk_") and second["revoked_keys"] == 1
    retailer_id = UUID(first["retailer_id"])
    with ConnectionPool(database_url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        retailers = Retailers(pool)
        assert retailers.authenticate(first["publishable_key"]) is None
        assert retailers.authenticate(second["publishable_key"])[:2] == (retailer_id, "publishable")
        assert retailers.authenticate(first["api_key"])[:2] == (retailer_id, "secret")


def test_keys_of_a_database_from_before_stay_secret_ones(database_url: str) -> None:
    """A database whose api_keys has no kind column yet: applying the schema keeps its keys as
    secret ones; applying it again changes nothing."""
    retailer_id = uuid4()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE api_keys DROP COLUMN kind")
        conn.execute("INSERT INTO retailers (id, name) VALUES (%s, 'Old shop')", (retailer_id,))
        conn.execute("INSERT INTO api_keys (key_hash, retailer_id) VALUES (%s, %s)", (hash_key("cl_old"), retailer_id))
    apply_schema(database_url)
    apply_schema(database_url)
    assert scalar_rows(database_url, "SELECT kind FROM api_keys WHERE retailer_id = %s", retailer_id) == [("secret",)]
    with ConnectionPool(database_url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        assert Retailers(pool).authenticate("cl_old")[:2] == (retailer_id, "secret")
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO api_keys (key_hash, retailer_id, kind) VALUES ('x', %s, 'admin')", (retailer_id,))


def scalar_rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


@pytest.fixture
def pool(database_url: str) -> Iterator[ConnectionPool]:
    with ConnectionPool(database_url, min_size=1, max_size=2, kwargs={"autocommit": True}) as opened:
        yield opened


@pytest.fixture
def listening(database_url: str, pool: ConnectionPool) -> Iterator[tuple[Retailers, KeyListener]]:
    """A Retailers as an API process has it: remembering keys while its listener listens."""
    retailers = Retailers(pool)
    listener = KeyListener(database_url, retailers).start()
    assert listener.listening.wait(10), "the listener did not LISTEN within 10 s"
    yield retailers, listener
    listener.stop()


def test_retailer_keys_lists_kind_prefix_and_dates_oldest_first_and_never_the_key_or_its_hash(
    database_url: str,
) -> None:
    created = last_json(run_cli(database_url, "retailer", "create", "Listed shop").stdout)
    issued = last_json(run_cli(database_url, "retailer", "key", "Listed shop", "--publishable").stdout)
    listed = run_cli(database_url, "retailer", "keys", " listed SHOP ")
    assert listed.returncode == 0, listed.stderr
    lines = [json.loads(line) for line in listed.stdout.splitlines()]

    keys = [created["api_key"], created["publishable_key"], issued["publishable_key"]]
    assert {line["key_id"] for line in lines} == {key_id_of(hash_key(key)) for key in keys}
    by_id = {line["key_id"]: line for line in lines}
    for key in keys:
        line = by_id[key_id_of(hash_key(key))]
        assert set(line) == {"key_id", "kind", "prefix", "created_at", "last_used_at", "revoked_at"}
        assert line["kind"] == ("secret" if key.startswith("cl_") else "publishable")
        assert line["prefix"] == key[:7] and len(line["prefix"]) == 7  # cl_ or pk_ and 4 characters
        assert line["last_used_at"] is None and line["revoked_at"] is None
        assert key not in listed.stdout and hash_key(key) not in listed.stdout
    created_times = [parse_time(line["created_at"]) for line in lines]
    assert created_times == sorted(created_times)
    assert lines[-1]["key_id"] == key_id_of(hash_key(issued["publishable_key"]))  # the newest last


def test_retailer_keys_of_an_unknown_retailer_is_exit_1(database_url: str) -> None:
    refused = run_cli(database_url, "retailer", "keys", "nobody")
    assert refused.returncode == 1
    assert "no retailer is named 'nobody'" in refused.stderr and refused.stdout == ""


def test_revoke_marks_the_key_revoked_once_and_refuses_unknown_ids_and_other_retailers_keys(
    database_url: str, pool: ConnectionPool
) -> None:
    mine = last_json(run_cli(database_url, "retailer", "create", "Revoking shop").stdout)
    theirs = last_json(run_cli(database_url, "retailer", "create", "Other shop").stdout)
    key_id = key_id_of(hash_key(mine["api_key"]))

    unknown = run_cli(database_url, "retailer", "revoke", "Revoking shop", "key_0000000000000000")
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert "has no key 'key_0000000000000000'" in unknown.stderr
    other = run_cli(database_url, "retailer", "revoke", "Revoking shop", key_id_of(hash_key(theirs["api_key"])))
    assert other.returncode == 1 and other.stdout == ""
    assert Retailers(pool).authenticate(theirs["api_key"]) is not None  # the other retailer's key still works
    nobody = run_cli(database_url, "retailer", "revoke", "nobody", key_id)
    assert nobody.returncode == 1 and "no retailer is named 'nobody'" in nobody.stderr

    first = run_cli(database_url, "retailer", "revoke", "Revoking shop", key_id)
    assert first.returncode == 0, first.stderr
    revoked = last_json(first.stdout)
    assert set(revoked) == {"key_id", "revoked_at"} and revoked["key_id"] == key_id
    again = run_cli(database_url, "retailer", "revoke", "Revoking shop", key_id)
    assert again.returncode == 0, again.stderr
    assert last_json(again.stdout) == revoked  # its first revocation time

    retailers = Retailers(pool)
    assert retailers.authenticate(mine["api_key"]) is None
    assert retailers.authenticate(mine["publishable_key"]) is not None
    listed = {line["key_id"]: line for line in listed_keys(database_url, "Revoking shop")}
    assert listed[key_id]["revoked_at"] == revoked["revoked_at"]


def test_a_listening_process_forgets_a_revoked_key_as_the_revocation_commits(
    database_url: str, listening: tuple[Retailers, KeyListener]
) -> None:
    retailers, _listener = listening
    created = last_json(run_cli(database_url, "retailer", "create", "Leaky shop").stdout)
    assert retailers.authenticate(created["api_key"]) is not None
    assert retailers.authenticate(created["publishable_key"]) is not None
    assert retailers.known(created["api_key"]) is not None  # remembered: no lookup per request

    revoked = run_cli(database_url, "retailer", "revoke", "Leaky shop", key_id_of(hash_key(created["api_key"])))
    assert revoked.returncode == 0, revoked.stderr
    wait_for(lambda: retailers.known(created["api_key"]) is None, 1.0, interval=0.02, message="the key forgotten")
    assert retailers.authenticate(created["api_key"]) is None
    assert retailers.known(created["publishable_key"]) is not None  # the other key is still remembered


def test_a_key_deleted_by_hand_is_forgotten_too(database_url: str, listening: tuple[Retailers, KeyListener]) -> None:
    retailers, _listener = listening
    created = last_json(run_cli(database_url, "retailer", "create", "Deleting shop").stdout)
    assert retailers.authenticate(created["api_key"]) is not None
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM api_keys WHERE key_hash = %s", (hash_key(created["api_key"]),))
    wait_for(lambda: retailers.known(created["api_key"]) is None, 1.0, interval=0.02, message="the key forgotten")
    assert retailers.authenticate(created["api_key"]) is None


def test_without_its_listening_connection_a_process_asks_the_database_for_every_key_until_it_listens_again(
    database_url: str, listening: tuple[Retailers, KeyListener]
) -> None:
    retailers, listener = listening
    created = last_json(run_cli(database_url, "retailer", "create", "Cut-off shop").stdout)
    assert retailers.authenticate(created["api_key"]) is not None
    assert retailers.known(created["api_key"]) is not None

    with psycopg.connect(database_url, autocommit=True) as conn:
        # Only the connection the listener lost is gone: the pool's still work.
        terminated = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'coupon-ledger key listener' AND datname = current_database()"
        ).fetchall()
        assert terminated == [(True,)]
        wait_for(lambda: retailers.known(created["api_key"]) is None, 1.0, interval=0.01, message="trust dropped")
        # A revocation committed in that window takes effect at the next request, whatever was remembered.
        conn.execute("ALTER TABLE api_keys DISABLE TRIGGER api_keys_revoked")  # nothing could be heard anyway
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_hash = %s", (hash_key(created["api_key"]),))
        conn.execute("ALTER TABLE api_keys ENABLE TRIGGER api_keys_revoked")
    assert retailers.authenticate(created["api_key"]) is None
    assert retailers.authenticate(created["publishable_key"]) is not None  # asked the database: still valid

    wait_for(listener.listening.is_set, 10, message="the listener to listen again")
    assert retailers.authenticate(created["publishable_key"]) is not None
    assert retailers.known(created["publishable_key"]) is not None  # remembered again
    assert retailers.known(created["api_key"]) is None


def test_last_used_at_is_written_at_the_first_use_then_at_most_once_a_minute(
    database_url: str, pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = last_json(run_cli(database_url, "retailer", "create", "Busy shop").stdout)
    key_hash = hash_key(created["api_key"])
    retailers = Retailers(pool)
    assert retailers.record_uses() == 0
    assert scalar_rows(database_url, "SELECT last_used_at FROM api_keys WHERE key_hash = %s", key_hash) == [(None,)]

    for _ in range(50):
        assert retailers.authenticate(created["api_key"]) is not None
    assert retailers.record_uses() == 1  # one write for 50 uses
    [(first_use,)] = scalar_rows(database_url, "SELECT last_used_at FROM api_keys WHERE key_hash = %s", key_hash)
    assert first_use is not None
    assert retailers.authenticate(created["api_key"]) is not None
    assert retailers.record_uses() == 0  # used again within the minute: nothing to write

    later = time.monotonic() + 61
    monkeypatch.setattr("api.retailers.time.monotonic", lambda: later)
    assert retailers.authenticate(created["api_key"]) is not None
    assert retailers.record_uses() == 1
    [(second_use,)] = scalar_rows(database_url, "SELECT last_used_at FROM api_keys WHERE key_hash = %s", key_hash)
    assert second_use > first_use
    listed = {line["key_id"]: line for line in listed_keys(database_url, "Busy shop")}
    assert parse_time(listed[key_id_of(key_hash)]["last_used_at"]) == second_use


def test_keys_from_before_the_key_history_are_listed_with_no_prefix_and_keep_working(database_url: str) -> None:
    retailer_id = uuid4()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER api_keys_revoked ON api_keys")
        conn.execute("DROP INDEX api_keys_key_id")
        conn.execute("DROP INDEX api_keys_retailer_created")
        for column in ("key_id", "prefix", "last_used_at", "revoked_at"):
            conn.execute(f"ALTER TABLE api_keys DROP COLUMN {column}")
        conn.execute("INSERT INTO retailers (id, name) VALUES (%s, 'Old keys shop')", (retailer_id,))
        conn.execute("INSERT INTO api_keys (key_hash, retailer_id) VALUES (%s, %s)", (hash_key("cl_old"), retailer_id))
    apply_schema(database_url)
    apply_schema(database_url)
    [listed] = listed_keys(database_url, "Old keys shop")
    assert listed["key_id"] == key_id_of(hash_key("cl_old"))
    assert listed["prefix"] is None and listed["kind"] == "secret" and listed["revoked_at"] is None
    with ConnectionPool(database_url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        assert Retailers(pool).authenticate("cl_old") is not None
    revoked = run_cli(database_url, "retailer", "revoke", "Old keys shop", listed["key_id"])
    assert revoked.returncode == 0, revoked.stderr
