"""A lost or leaked API key: `coupon-ledger retailer key NAME [--revoke-others]`."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from api.retailers import Retailers
from tests.integration.helpers import run_cli


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
        assert str(fresh.authenticate(first["api_key"])) == first["retailer_id"]
        assert str(fresh.authenticate(second["api_key"])) == first["retailer_id"]

        revoked = run_cli(database_url, "retailer", "key", "Keyed shop", "--revoke-others")
        assert revoked.returncode == 0, revoked.stderr
        third = last_json(revoked.stdout)
        assert third["revoked_keys"] == 2

        after = Retailers(pool)  # a process that has not seen the old keys
        assert after.authenticate(first["api_key"]) is None
        assert after.authenticate(second["api_key"]) is None
        assert str(after.authenticate(third["api_key"])) == first["retailer_id"]


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
