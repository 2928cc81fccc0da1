"""A revoked key is refused by every running `coupon-ledger serve` process within a second: two
servers on one database, and one server with two workers, each having just authenticated it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.retailers import hash_key, key_id_of
from tests.support.postgres import Server, auth, cluster, create_coupon, run_cli, scalar, wait_for

pytestmark = pytest.mark.slow

NAME = "Revoking Shop"
CODE = "KEYCHECK"
POLL_EVERY = 0.05
REVOKED_WITHIN = 1.0
BURST = 8  # requests per poll, each on a new connection: they spread over a server's workers


def last_json(output: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return parsed


def get_coupon(server: Server, api_key: str) -> httpx.Response:
    """GET /v1/coupons/CODE on a new connection (a server with several workers may give it to any)."""
    return httpx.get(f"{server.base_url}/v1/coupons/{CODE}", headers=auth(api_key), timeout=10)


def statuses(server: Server, api_key: str, count: int) -> list[int]:
    answers = [get_coupon(server, api_key) for _ in range(count)]
    for answer in answers:
        if answer.status_code == 401:
            assert answer.json()["error"]["code"] == "UNAUTHENTICATED", answer.text
    return [answer.status_code for answer in answers]


def revoke(url: str, api_key: str) -> float:
    """Revoke the key with the CLI; the monotonic time the command returned."""
    revoked = run_cli(url, "retailer", "revoke", NAME, key_id_of(hash_key(api_key)))
    assert revoked.returncode == 0, revoked.stderr
    return time.monotonic()


def refused_by_all(servers: list[Server], api_key: str, since: float, burst: int = 1) -> list[float]:
    """Poll every server every POLL_EVERY seconds until each answers ``api_key`` 401 (every request
    of a burst); how long after ``since`` each did. Fails if one still answers 2xx after REVOKED_WITHIN s."""
    refused_after: dict[int, float] = {}
    while len(refused_after) < len(servers):
        for index, server in enumerate(servers):
            if index in refused_after:
                continue
            asked = time.monotonic()
            answered = statuses(server, api_key, burst)
            assert set(answered) <= {200, 401}, answered
            if set(answered) == {401}:
                refused_after[index] = asked - since
            else:
                assert asked - since <= REVOKED_WITHIN, (
                    f"{server.base_url} still accepted the revoked key {asked - since:.3f} s after the revoke"
                )
        time.sleep(POLL_EVERY)
    return [refused_after[index] for index in range(len(servers))]


def keys_listed(url: str) -> dict[str, dict[str, Any]]:
    listed = run_cli(url, "retailer", "keys", NAME)
    assert listed.returncode == 0, listed.stderr
    return {line["key_id"]: line for line in map(json.loads, listed.stdout.splitlines())}


def key_listeners(url: str) -> int:
    return int(
        scalar(
            url,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'coupon-ledger key listener' AND datname = current_database()",
        )
    )


def test_two_servers_refuse_a_revoked_key_within_a_second_and_keep_the_others(
    database_url: str, tmp_path: Path
) -> None:
    created = last_json(run_cli(database_url, "retailer", "create", NAME).stdout)
    leaked, publishable = created["api_key"], created["publishable_key"]
    other = last_json(run_cli(database_url, "retailer", "key", NAME).stdout)["api_key"]
    with cluster(database_url, tmp_path) as running:
        servers = running.start(2)
        create_coupon(servers[0], other, CODE, None)
        wait_for(lambda: key_listeners(database_url) == 2, 15, message="both servers listening")
        for server in servers:  # both have just authenticated every key
            assert statuses(server, leaked, 3) == [200] * 3
            assert statuses(server, other, 3) == [200] * 3

        refused_after = refused_by_all(servers, leaked, since=revoke(database_url, leaked))
        print(f"revoked key refused after {[f'{t:.3f}' for t in refused_after]} s")
        for server in servers:
            assert statuses(server, leaked, 3) == [401] * 3
            assert statuses(server, other, 3) == [200] * 3  # the other keys keep working
        listed = keys_listed(database_url)
        assert listed[key_id_of(hash_key(leaked))]["revoked_at"] is not None
        assert listed[key_id_of(hash_key(other))]["last_used_at"] is not None  # used through the servers

        # --revoke-others: only the new secret key works (the publishable one is of the other kind).
        issued = run_cli(database_url, "retailer", "key", NAME, "--revoke-others")
        assert issued.returncode == 0, issued.stderr
        since = time.monotonic()
        new_key = last_json(issued.stdout)["api_key"]
        assert last_json(issued.stdout)["revoked_keys"] == 1
        refused_by_all(servers, other, since=since)
        new_id = key_id_of(hash_key(new_key))
        assert keys_listed(database_url)[new_id]["last_used_at"] is None
        for server in servers:
            assert statuses(server, new_key, 3) == [200] * 3
            assert statuses(server, leaked, 1) == statuses(server, other, 1) == [401]
            storefront = httpx.get(f"{server.base_url}/v1/storefront/coupons", headers=auth(publishable), timeout=10)
            assert storefront.status_code != 401, storefront.text
        # last_used_at moves after use (each server writes it within a fraction of a second of a first use).
        wait_for(lambda: keys_listed(database_url)[new_id]["last_used_at"], 5, message="last_used_at written")


def test_a_server_with_two_workers_refuses_a_revoked_key_within_a_second(database_url: str, tmp_path: Path) -> None:
    created = last_json(run_cli(database_url, "retailer", "create", NAME).stdout)
    leaked = created["api_key"]
    other = last_json(run_cli(database_url, "retailer", "key", NAME).stdout)["api_key"]
    server = Server(database_url, tmp_path, "workers", args=("--workers", "2"))
    try:
        server.wait_healthy()
        create_coupon(server, other, CODE, None)
        wait_for(lambda: key_listeners(database_url) == 2, 15, message="both workers listening")
        assert statuses(server, leaked, 40) == [200] * 40  # on 40 connections: both workers remember it

        refused_after = refused_by_all([server], leaked, since=revoke(database_url, leaked), burst=BURST)
        print(f"revoked key refused by every worker after {refused_after[0]:.3f} s")
        assert statuses(server, leaked, 40) == [401] * 40
        assert statuses(server, other, 40) == [200] * 40
    finally:
        server.terminate()
