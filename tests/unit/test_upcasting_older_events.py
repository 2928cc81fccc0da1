"""Events and snapshots stored before coupons had windows, per-customer limits, caps, scopes and
campaigns still load, with the new fields' defaults.

Before then a Coupon.Created had no starts_at, max_uses_per_customer, max_discount_amount, scope,
public or campaign_id and no class_version; a Coupon snapshot had none of those nor archived; a
Redemption.Recorded had no customer_id or campaign_id. The stored states below are written as the
code of that time wrote them (the library's JSON, through our transcoder), then read by today's.
tests/integration/test_lifecycle_and_campaigns_postgres.py runs the same on PostgreSQL, where the
writer reads them with its own SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ledger.application import CouponLedger
from ledger.domain import Coupon, Redemption
from tests.support.commands import apply, transition
from tests.support.ledger import RETAILER, D, ManualClock
from tests.support.stored_events import V2_DEFAULTS, assert_v1_history_reads_with_defaults, v1_created, write_v1_history


@pytest.fixture
def upcasts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each upcast of a Coupon snapshot or Created event, and of a Redemption.Recorded."""
    calls: list[str] = []

    def spy(name: str, upcast: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        def recorded(state: dict[str, Any]) -> None:
            calls.append(name)
            upcast(state)

        return recorded

    monkeypatch.setattr(Coupon, "upcast_v1_v2", staticmethod(spy("snapshot", Coupon.upcast_v1_v2)))
    monkeypatch.setattr(Coupon.Created, "upcast_v1_v2", staticmethod(spy("created", Coupon.Created.upcast_v1_v2)))
    monkeypatch.setattr(
        Redemption.Recorded, "upcast_v1_v2", staticmethod(spy("recorded", Redemption.Recorded.upcast_v1_v2))
    )
    return calls


def test_coupons_redemptions_and_snapshots_stored_by_older_code_load_with_the_defaults(
    ledger: CouponLedger, clock: ManualClock, upcasts: list[str]
) -> None:
    write_v1_history(ledger)
    assert_v1_history_reads_with_defaults(ledger, clock())
    assert {"snapshot", "recorded"} <= set(upcasts)


def test_a_v1_created_event_without_a_snapshot_is_upcast(
    ledger: CouponLedger, clock: ManualClock, upcasts: list[str]
) -> None:
    ledger.recorder.insert_events([v1_created(ledger, "BARE", max_uses=None, is_active=False)])
    bare = ledger.get_coupon(RETAILER, "BARE")
    assert {name: getattr(bare, name) for name in V2_DEFAULTS} == V2_DEFAULTS
    assert (bare.status(clock()), bare.uses_count, bare.version) == ("inactive", 0, 1)
    assert upcasts == ["created"]
    assert transition(ledger, RETAILER, "BARE", "activate").status(clock()) == "active"
    assert apply(ledger, RETAILER, "BARE", D("20.00")).quote.discount_amount == D("2.00")


def test_todays_events_carry_their_class_version() -> None:
    # Coupon snapshots are at 3 since coupons keep their live holds; see tests/unit/test_holds.py.
    assert (Coupon.class_version, Coupon.Created.class_version) == (3, 2)
    assert Redemption.Recorded.class_version == 2
