"""TestCouponRules again, on PostgreSQL: only the fixtures differ from the in-memory unit run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.database import eventsourcing_env, open_ledger
from ledger.application import CouponLedger
from tests.support.ledger import ManualClock
from tests.unit.test_coupon_rules import TestCouponRules as _Rules


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(database_url: str, clock: ManualClock) -> Iterator[CouponLedger]:
    ledger = open_ledger(eventsourcing_env(database_url))
    ledger.clock = clock
    yield ledger
    ledger.close()


@pytest.fixture
def property_examples() -> int:
    """Each example is up to 40 round trips to the database: keep the property test short here."""
    return 15


class TestCouponRulesOnPostgres(_Rules):
    pass
