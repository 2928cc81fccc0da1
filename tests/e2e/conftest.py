"""End-to-end fixtures: one fresh database and one running app per test module, a fresh
retailer (and so an empty coupon list) per test.

Retailers isolate coupons, products and orders, so tests in a module never see each other's;
checkout tests still look at orders by their own user id.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.support.http import Api, Sql, new_retailer
from tests.support.postgres import fresh_database


@pytest.fixture(scope="module")
def e2e_database_url(server_url: str) -> Iterator[str]:
    with fresh_database(server_url, prefix="e2e") as url:
        yield url


@pytest.fixture(scope="module")
def app(e2e_database_url: str) -> FastAPI:
    return create_app(Settings(database_url=e2e_database_url))


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:  # the lifespan opens the services and the projection runner
        yield test_client


@pytest.fixture
def api(app: FastAPI, client: TestClient) -> Api:
    """A client authenticated as a brand-new retailer."""
    return new_retailer(app, client, "shop-a")


@pytest.fixture
def other_api(app: FastAPI, client: TestClient) -> Api:
    """A second, unrelated retailer."""
    return new_retailer(app, client, "shop-b")


@pytest.fixture
def sql(e2e_database_url: str) -> Sql:
    def run(query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(e2e_database_url) as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    return run
