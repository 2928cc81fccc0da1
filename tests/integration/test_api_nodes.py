"""Several API nodes on one primary: two `serve` processes on two ports, and one `serve --workers 2`.
A read on any node reflects a write another node acknowledged just before; one projection leads;
concurrent redemptions through every node never pass the limit."""

from __future__ import annotations

import json
from collections import Counter
from functools import partial
from pathlib import Path

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


def retailer_key(url: str) -> str:
    created = run_cli(url, "retailer", "create", "Node Shop")
    assert created.returncode == 0, created.stderr
    key: str = json.loads(created.stdout.strip().splitlines()[-1])["api_key"]
    return key


def apply(server: Server, key: str, code: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/coupons/apply", json={"code": code, "subtotal": "50.00"}, headers=auth(key), timeout=60
    )


def listed_uses(server: Server, key: str, code: str) -> int:
    """uses_count of ``code`` in GET /v1/coupons, asked once on a new connection: it must answer 200."""
    response = httpx.get(f"{server.base_url}/v1/coupons", headers=auth(key), timeout=30)
    assert response.status_code == 200, response.text
    return next(int(c["uses_count"]) for c in response.json()["data"] if c["code"] == code)


def logged_redemptions(server: Server, key: str, code: str) -> int:
    response = httpx.get(f"{server.base_url}/v1/redemptions", params={"code": code}, headers=auth(key), timeout=30)
    assert response.status_code == 200, response.text
    return len(response.json()["data"])


def verify_clean(url: str) -> None:
    verified = run_cli(url, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "VIOLATION" not in verified.stdout


def test_a_list_on_one_node_reflects_a_redemption_the_other_node_just_acknowledged(
    database_url: str, tmp_path: Path
) -> None:
    key = retailer_key(database_url)
    with cluster(database_url, tmp_path) as running:
        a, b = running.start(2)
        create_coupon(a, key, "TWONODES", None)

        for uses in range(1, 13):
            writer, reader = (a, b) if uses % 2 else (b, a)
            assert apply(writer, key, "TWONODES").status_code == 201
            assert listed_uses(reader, key, "TWONODES") == uses  # at once: no retry, no 503
            assert logged_redemptions(reader, key, "TWONODES") == uses

        assert len(leader_lock_holders(database_url)) == 1
        assert projection_listeners(database_url) == 1  # one subscription feeds both projections
    verify_clean(database_url)


def test_serve_with_two_workers_keeps_the_limit_and_reads_its_own_writes(database_url: str, tmp_path: Path) -> None:
    key = retailer_key(database_url)
    with cluster(database_url, tmp_path) as running:
        (server,) = running.start(1, args=("--workers", "2"))
        create_coupon(server, key, "WORKERS", 15)

        responses = race([partial(apply, server, key, "WORKERS") for _ in range(60)])
        answered = [r for r in responses if isinstance(r, httpx.Response)]
        assert len(answered) == 60, [r for r in responses if not isinstance(r, httpx.Response)]
        assert Counter(r.status_code for r in answered) == {201: 15, 422: 45}
        assert {r.json()["error"]["code"] for r in answered if r.status_code == 422} == {"USAGE_LIMIT_REACHED"}
        assert redeemed_events(database_url) == 15

        # Each request on a new connection: the two workers take turns, each must see every write.
        create_coupon(server, key, "WORKERS-RYW", None)
        for uses in range(1, 11):
            assert apply(server, key, "WORKERS-RYW").status_code == 201
            assert listed_uses(server, key, "WORKERS-RYW") == uses

        assert len(wait_for(lambda: leader_lock_holders(database_url), 15, message="a projection leader")) == 1
        assert projection_listeners(database_url) == 1  # one runner for the coupons and the webhooks
    verify_clean(database_url)
