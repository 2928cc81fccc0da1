"""Three `coupon-ledger serve` processes on one database: one limit, one projection leader, one answer."""

from __future__ import annotations

import json
import time
from collections import Counter
from functools import partial
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from tests.support.postgres import (
    Server,
    auth,
    cluster,
    create_coupon,
    leader_lock_holders,
    projection_listeners,
    race,
    redeemed_events,
    run_cli,
    wait_for,
)

pytestmark = pytest.mark.slow

REQUESTS = 100
MAX_USES = 10


def create_retailer(url: str) -> dict[str, str]:
    created = run_cli(url, "retailer", "create", "Racing Shop")
    assert created.returncode == 0, created.stderr
    retailer: dict[str, str] = json.loads(created.stdout.strip().splitlines()[-1])
    return retailer


def apply(server: Server, api_key: str, code: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/coupons/apply",
        json={"code": code, "subtotal": "50.00"},
        headers=auth(api_key),
        timeout=60,
    )


def listed_uses(server: Server, api_key: str, code: str) -> int | None:
    """uses_count of ``code`` in GET /v1/coupons, or None while the list is catching up (503)."""
    response = httpx.get(f"{server.base_url}/v1/coupons", headers=auth(api_key), timeout=30)
    if response.status_code == 503:
        return None
    assert response.status_code == 200, response.text
    return next(int(c["uses_count"]) for c in response.json()["data"] if c["code"] == code)


def caught_up_uses(server: Server, api_key: str, code: str, timeout: float = 15.0) -> int:
    """The first answer of GET /v1/coupons that is not a 503 "catching up"; it must reflect every prior write."""
    deadline = time.monotonic() + timeout
    while (uses := listed_uses(server, api_key, code)) is None:
        assert time.monotonic() < deadline, f"{server.base_url} still catching up after {timeout} s"
        time.sleep(0.2)
    return uses


def outcome(response: httpx.Response) -> tuple[int, str | None]:
    code = response.json().get("error", {}).get("code") if response.status_code >= 400 else None
    return response.status_code, code


def test_a_hundred_applies_spread_over_three_servers_redeem_a_ten_use_coupon_exactly_ten_times(
    database_url: str, tmp_path: Path
) -> None:
    retailer = create_retailer(database_url)
    key = retailer["api_key"]
    with cluster(database_url, tmp_path) as running:
        servers = running.start(3)
        coupon = create_coupon(servers[0], key, "THREEWAY", MAX_USES)

        responses = race([partial(apply, servers[i % 3], key, "THREEWAY") for i in range(REQUESTS)])

        failures = [r for r in responses if not isinstance(r, httpx.Response)]
        assert not failures, failures
        answered = [r for r in responses if isinstance(r, httpx.Response)]
        assert Counter(map(outcome, answered)) == {
            (201, None): MAX_USES,
            (422, "USAGE_LIMIT_REACHED"): REQUESTS - MAX_USES,
        }
        assert len({r.json()["redemption_id"] for r in answered if r.status_code == 201}) == MAX_USES
        assert redeemed_events(database_url, UUID(coupon["id"])) == redeemed_events(database_url) == MAX_USES

        assert [caught_up_uses(server, key, "THREEWAY") for server in servers] == [MAX_USES] * 3
        assert len(leader_lock_holders(database_url)) == 1
        assert projection_listeners(database_url) == 1  # one runner, for every projection, among the three

        verified = run_cli(database_url, "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "VIOLATION" not in verified.stdout


def test_when_the_projection_leader_is_killed_another_server_takes_over_the_projection(
    database_url: str, tmp_path: Path
) -> None:
    key = create_retailer(database_url)["api_key"]
    with cluster(database_url, tmp_path) as running:
        (leader,) = running.start(1)
        holder = wait_for(lambda: leader_lock_holders(database_url), 15, message="the first server to lead")
        followers = running.start(2)
        assert leader_lock_holders(database_url) == holder  # the first server still leads
        create_coupon(leader, key, "FAILOVER", None)
        for _ in range(2):
            assert apply(followers[0], key, "FAILOVER").status_code == 201
        assert [caught_up_uses(server, key, "FAILOVER") for server in (leader, *followers)] == [2, 2, 2]

        leader.kill()
        try:
            new_holder = wait_for(
                lambda: [pid for pid in leader_lock_holders(database_url) if pid not in holder],
                30,
                message="a surviving server to take over the projection",
            )
        except AssertionError as error:  # say what each server's projection process was doing
            logs = "\n".join(f"--- {server.log_path.name}\n{server.log()[-4000:]}" for server in running.servers)
            raise AssertionError(f"{error}\n{logs}") from None
        assert len(new_holder) == 1
        wait_for(lambda: projection_listeners(database_url) == 1, 15, message="one runner for every projection")
        for i in range(3):
            assert apply(followers[i % 2], key, "FAILOVER").status_code == 201

        assert [caught_up_uses(server, key, "FAILOVER") for server in followers] == [5, 5]
        assert redeemed_events(database_url) == 5
        verified = run_cli(database_url, "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
