"""Whose address a `coupon-ledger serve` process counts failed lookups for: the TCP peer's, unless
the peer is one of COUPON_LEDGER_TRUSTED_PROXIES; uvicorn never rewrites it from X-Forwarded-For."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.support.postgres import Server, auth, cluster, run_cli

pytestmark = pytest.mark.slow

BUDGET = 3
WINDOW = 3600  # no failure comes back during the test


def publishable_key(url: str) -> str:
    created = run_cli(url, "retailer", "create", "Forwarded Shop")
    assert created.returncode == 0, created.stderr
    key: str = json.loads(created.stdout.strip().splitlines()[-1])["publishable_key"]
    return key


def verify(server: Server, key: str, code: str, forwarded_for: str) -> tuple[int, str | None]:
    response = httpx.post(
        f"{server.base_url}/v1/storefront/coupons/verify",
        json={"code": code, "cart_subtotal": "50.00"},
        headers={**auth(key), "X-Forwarded-For": forwarded_for},
        timeout=30,
    )
    return response.status_code, response.json()["error"]["code"]


@pytest.fixture
def small_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COUPON_LEDGER_THROTTLE_BUDGET", str(BUDGET))
    monkeypatch.setenv("COUPON_LEDGER_THROTTLE_WINDOW", str(WINDOW))
    monkeypatch.delenv("COUPON_LEDGER_TRUSTED_PROXIES", raising=False)
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)


@pytest.mark.usefixtures("small_budget")
def test_a_guesser_rotating_x_forwarded_for_spends_one_budget_on_a_real_server(
    database_url: str, tmp_path: Path
) -> None:
    key = publishable_key(database_url)
    with cluster(database_url, tmp_path) as running:
        (server,) = running.start(1)
        answers = [verify(server, key, f"GUESS{i}", f"203.0.113.{i}") for i in range(BUDGET + 3)]
    assert answers == [(404, "COUPON_NOT_FOUND")] * BUDGET + [(429, "RATE_LIMITED")] * 3


@pytest.mark.usefixtures("small_budget")
def test_x_forwarded_for_from_a_trusted_proxy_names_the_shopper_on_a_real_server(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COUPON_LEDGER_TRUSTED_PROXIES", "127.0.0.1")
    key = publishable_key(database_url)
    with cluster(database_url, tmp_path) as running:
        (server,) = running.start(1)
        spender = [verify(server, key, f"GUESS{i}", "203.0.113.7") for i in range(BUDGET + 1)]
        others = [verify(server, key, f"OTHER{i}", f"198.51.100.{i}") for i in range(BUDGET + 1)]
    assert spender == [(404, "COUPON_NOT_FOUND")] * BUDGET + [(429, "RATE_LIMITED")]
    assert others == [(404, "COUPON_NOT_FOUND")] * (BUDGET + 1)  # each address its own budget
