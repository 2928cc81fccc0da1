"""Fixtures shared by the PostgreSQL integration tests: a ledger on the test's fresh database, and a
list for ledgers a test opens itself (closed afterwards)."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID, uuid4

import pytest

from api.database import eventsourcing_env, open_ledger
from ledger.application import CouponLedger


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return eventsourcing_env(database_url, pool_size=2, max_overflow=4)


@pytest.fixture
def ledger(env: dict[str, str]) -> Iterator[CouponLedger]:
    ledger = open_ledger(env)
    yield ledger
    ledger.close()


@pytest.fixture
def retailer_id() -> UUID:
    return uuid4()


@pytest.fixture
def open_ledgers() -> Iterator[list[CouponLedger]]:
    ledgers: list[CouponLedger] = []
    yield ledgers
    for ledger in ledgers:
        ledger.close()
