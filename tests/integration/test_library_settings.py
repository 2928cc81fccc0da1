"""The eventsourcing settings the service depends on cannot be switched off from the environment."""

import pytest
from eventsourcing.postgres import PostgresApplicationRecorder

from api.database import eventsourcing_env, open_ledger


@pytest.mark.parametrize("variable", ["POSTGRES_ENABLE_DB_FUNCTIONS", "LEDGER_POSTGRES_ENABLE_DB_FUNCTIONS"])
def test_db_functions_stay_off_even_when_the_environment_enables_them(
    database_url: str, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "y")
    ledger = open_ledger(eventsourcing_env(database_url))
    try:
        assert isinstance(ledger.recorder, PostgresApplicationRecorder)
        assert ledger.recorder.datastore.enable_db_functions is False
    finally:
        ledger.close()


@pytest.mark.parametrize("variable", ["AGGREGATE_CACHE_FASTFORWARD", "LEDGER_AGGREGATE_CACHE_FASTFORWARD"])
def test_the_aggregate_cache_is_always_fast_forwarded(
    database_url: str, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "n")
    ledger = open_ledger(eventsourcing_env(database_url))
    try:
        assert ledger.repository.cache is not None
        assert ledger.repository.fastforward is True
    finally:
        ledger.close()
