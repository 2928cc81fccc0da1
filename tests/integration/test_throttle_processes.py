"""The brute-force limit across `coupon-ledger serve` processes on one database: one budget in
total, not one per process, and it survives a restart."""

from __future__ import annotations

import json
from collections import Counter
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.support.postgres import Server, auth, cluster, create_coupon, race, run_cli

pytestmark = pytest.mark.slow

BUDGET = 5
WINDOW = 3600  # one failure comes back every 720 s: none does during the test
RETRY_AFTER = WINDOW // BUDGET


def apply(server: Server, api_key: str, code: str, customer: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/coupons/apply",
        json={"code": code, "subtotal": "50.00", "customer_id": customer},
        headers=auth(api_key),
        timeout=60,
    )


def outcome(response: httpx.Response) -> tuple[int, str | None]:
    code = response.json().get("error", {}).get("code") if response.status_code >= 400 else None
    return response.status_code, code


NOT_FOUND = (404, "COUPON_NOT_FOUND")
RATE_LIMITED = (429, "RATE_LIMITED")


def test_failed_lookups_spread_over_two_servers_spend_one_budget_which_a_restart_keeps(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COUPON_LEDGER_THROTTLE_BUDGET", str(BUDGET))
    monkeypatch.setenv("COUPON_LEDGER_THROTTLE_WINDOW", str(WINDOW))
    created = run_cli(database_url, "retailer", "create", "Guessed Shop")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout.strip().splitlines()[-1])["api_key"]
    with cluster(database_url, tmp_path) as running:
        servers = running.start(2)
        create_coupon(servers[0], key, "KNOWN", None)

        # Racing: 30 guesses at once, alternating between the servers.
        raced = race([partial(apply, servers[i % 2], key, f"GUESS{i}", "racer") for i in range(30)])
        assert Counter(outcome(r) for r in raced if isinstance(r, httpx.Response)) == {
            NOT_FOUND: BUDGET,
            RATE_LIMITED: 30 - BUDGET,
        }, raced

        # One after the other: the budget is spent once in total, whichever server counts.
        answers = [outcome(apply(servers[i % 2], key, f"GUESS{i}", "stepper")) for i in range(BUDGET)]
        assert answers == [NOT_FOUND] * BUDGET
        for server in servers:
            refused = apply(server, key, "GUESS-MORE", "stepper")
            assert outcome(refused) == RATE_LIMITED
            assert refused.headers["Retry-After"] == str(RETRY_AFTER)
            assert outcome(apply(server, key, "KNOWN", "stepper")) == RATE_LIMITED
        assert apply(servers[1], key, "KNOWN", "someone-else").status_code == 201

        running.stop()
        (restarted,) = running.start(1)
        assert outcome(apply(restarted, key, "GUESS-AGAIN", "stepper")) == RATE_LIMITED
        assert outcome(apply(restarted, key, "KNOWN", "stepper")) == RATE_LIMITED
        assert outcome(apply(restarted, key, "GUESS-AGAIN", "racer")) == RATE_LIMITED
        assert apply(restarted, key, "KNOWN", "someone-else").status_code == 201
