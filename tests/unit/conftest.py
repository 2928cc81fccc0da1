"""Unit fixtures: a CouponLedger on the eventsourcing library's in-memory store, with a clock we control."""

from __future__ import annotations

import pytest

from ledger.application import CouponLedger
from tests.support.ledger import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(clock: ManualClock) -> CouponLedger:
    return CouponLedger(clock=clock)


@pytest.fixture
def property_examples() -> int:
    """How many examples the property tests of TestCouponRules run (the Postgres run uses fewer)."""
    return 100
