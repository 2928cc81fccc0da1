"""A row lock held elsewhere stalls only what needs that row, for a bounded time: the request that
waits on it is answered 503 with a reason, and every other write goes on meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.support.http import Api, new_retailer


@pytest.fixture(scope="module")
def app(e2e_database_url: str) -> Iterator[FastAPI]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COUPON_LEDGER_LOCK_TIMEOUT", "0.5")
        yield create_app(Settings(database_url=e2e_database_url))


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COUPON_LEDGER_LOCK_TIMEOUT", "0.5")
        with TestClient(app) as test_client:
            yield test_client


@pytest.fixture
def api(app: FastAPI, client: TestClient) -> Api:
    return new_retailer(app, client, "locks")


def test_a_checkout_waiting_on_a_product_locked_elsewhere_is_503_and_other_writes_go_on(
    api: Api, e2e_database_url: str
) -> None:
    product = api.add_product("Locked lamp", "20.00", 5)
    api.create_coupon("LAMP10")
    api.create_coupon("ELSEWHERE")
    answers: dict[str, Any] = {}
    locked, done = threading.Event(), threading.Event()

    def hold_the_row() -> None:
        with psycopg.connect(e2e_database_url) as conn:
            conn.execute("SELECT id FROM products WHERE id = %s FOR UPDATE", (product["id"],))
            locked.set()
            done.wait(60)

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    try:
        assert locked.wait(30)
        started = time.monotonic()
        checkout = api.post(
            "/v1/checkout",
            json={"user_id": 1, "items": [{"product_id": product["id"], "quantity": 1}], "coupon_code": "LAMP10"},
        )
        answers["seconds"] = time.monotonic() - started
        other = api.apply("ELSEWHERE", "30.00")
    finally:
        done.set()
        holder.join(30)

    assert checkout.status_code == 503, checkout.text
    error = checkout.json()["error"]
    assert (error["code"], error["details"]["reason"]) == ("SERVICE_UNAVAILABLE", "lock_contention")
    assert checkout.headers["Retry-After"] == "1"
    assert other.status_code == 201, other.text
    assert api.coupon("LAMP10")["uses_count"] == 0
    assert api.stock_of(product["id"]) == 5
