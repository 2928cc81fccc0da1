"""A lost or leaked API key: `coupon-ledger retailer key NAME [--revoke-others]`."""

from __future__ import annotations

import json
import time
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from api.database import apply_schema
from api.retailers import Retailers, hash_key
from tests.support.postgres import run_cli


def last_json(output: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return parsed


def test_a_new_key_works_beside_the_old_one_and_revoking_stops_every_other(database_url: str) -> None:
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


def test_a_running_process_stops_accepting_a_revoked_key_once_its_memory_of_it_expires(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = last_json(run_cli(database_url, "retailer", "create", "Leaky shop").stdout)
    with ConnectionPool(database_url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        running = Retailers(pool, known_for=60)
        assert running.authenticate(created["api_key"]) is not None
        assert run_cli(database_url, "retailer", "key", "Leaky shop", "--revoke-others").returncode == 0
        assert running.known(created["api_key"]) is not None  # still trusted for a while
        later = time.monotonic() + 61
        monkeypatch.setattr("api.retailers.time.monotonic", lambda: later)
        assert running.known(created["api_key"]) is None
        assert running.authenticate(created["api_key"]) is None


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
        remembered = retailers.known(printed["publishable_key"])  # remembered with its kind
        assert remembered is not None and remembered[:2] == (retailer_id, "publishable")


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
