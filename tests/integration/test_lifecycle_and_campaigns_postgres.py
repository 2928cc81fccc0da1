"""The domain tests of PATCH, reversal and campaigns again on PostgreSQL (the writer reads
aggregates with its own SQL, the events go through the binary insert), plus what only a real store
shows: events and snapshots stored by the code before windows, per-customer limits, caps, scopes
and campaigns, read by that SQL, and the new events' values (datetimes, amounts, scopes, templates
in nested dicts) surviving a round trip into a fresh process. The concurrency of the limits is in
test_limits_under_concurrency.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest

from api.database import eventsourcing_env, open_ledger
from ledger.application import SNAPSHOT_INTERVAL, CouponLedger
from ledger.domain import Coupon
from tests.support.commands import apply, create_campaign, create_coupon, reverse, update_coupon
from tests.support.ledger import RETAILER, START, ManualClock, campaign_codes, data_of, item, served
from tests.support.stored_events import assert_v1_history_reads_with_defaults, write_v1_history
from tests.unit.test_coupon_lifecycle import TestUpdate as _Update
from tests.unit.test_reversals_and_campaigns import TestCampaigns as _Campaigns
from tests.unit.test_reversals_and_campaigns import TestReversal as _Reversal

D = Decimal


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(database_url: str, clock: ManualClock) -> Iterator[CouponLedger]:
    ledger = open_ledger(eventsourcing_env(database_url))
    ledger.clock = clock
    yield ledger
    ledger.close()


class TestUpdateOnPostgres(_Update):
    pass


class TestReversalOnPostgres(_Reversal):
    pass


class TestCampaignsOnPostgres(_Campaigns):
    pass


def reopened(database_url: str, clock: ManualClock) -> CouponLedger:
    """Another process's ledger: nothing cached."""
    fresh = open_ledger(eventsourcing_env(database_url))
    fresh.clock = clock
    return fresh


def test_history_stored_by_older_code_reads_with_the_defaults_through_the_writers_sql(
    database_url: str, ledger: CouponLedger, clock: ManualClock
) -> None:
    write_v1_history(ledger)
    assert_v1_history_reads_with_defaults(ledger, clock())


def test_the_new_terms_survive_the_store_and_a_snapshot_into_another_process(
    database_url: str, ledger: CouponLedger, clock: ManualClock, open_ledgers: list[CouponLedger]
) -> None:
    create_coupon(
        ledger,
        RETAILER,
        "ROUNDTRIP",
        "percentage",
        D("12.5"),
        starts_at=START - timedelta(hours=1),
        max_uses_per_customer=SNAPSHOT_INTERVAL,
        max_discount_amount=D("9.99"),
        scope={"category_ids": ["kitchen"], "excluded_product_ids": ["knife"]},
        public=True,
    )
    changes = {"expires_at": START + timedelta(days=30, microseconds=7), "min_order_value": D("10.01")}
    update_coupon(ledger, RETAILER, "ROUNDTRIP", changes)
    cart = [item("mug", "12.50", 2, category_id="kitchen"), item("knife", "30.00", category_id="kitchen")]
    receipts = [apply(ledger, RETAILER, "ROUNDTRIP", None, items=cart, customer_id="alice") for _ in range(98)]
    reverse(ledger, RETAILER, receipts[0].redemption_id, "cancelled")  # version 101: past the snapshot interval
    assert ledger.snapshots is not None
    assert [s.originator_version for s in ledger.snapshots.get(receipts[0].redemption_id)] == []
    coupon_id = ledger.get_coupon(RETAILER, "ROUNDTRIP").id
    assert [s.originator_version for s in ledger.snapshots.get(coupon_id)] == [SNAPSHOT_INTERVAL]

    other = reopened(database_url, clock)
    open_ledgers.append(other)
    read = other.get_coupon(RETAILER, "roundtrip")
    assert isinstance(read, Coupon)
    assert (read.starts_at, read.expires_at, read.min_order_value, read.max_discount_amount) == (
        START - timedelta(hours=1),
        changes["expires_at"],
        D("10.01"),
        D("9.99"),
    )
    assert read.scope == {"category_ids": ["kitchen"], "excluded_product_ids": ["knife"]}
    assert (read.public, read.uses_count, read.version) == (True, 97, 101)
    updated = [e for e in other.coupon_events(RETAILER, "ROUNDTRIP") if e.type == "Coupon.Updated"]
    assert [data_of(e) for e in updated] == [served({"changes": changes})]
    quote = apply(other, RETAILER, "ROUNDTRIP", None, items=cart, customer_id="alice").quote
    assert (quote.original_subtotal, quote.discount_amount) == (D("55.00"), D("3.13"))  # 12.5% of 25.00
    assert other.get_coupon(RETAILER, "ROUNDTRIP").uses_count == 98


def test_a_campaigns_template_survives_the_store(
    database_url: str, ledger: CouponLedger, clock: ManualClock, open_ledgers: list[CouponLedger]
) -> None:
    template = {
        "discount_type": "fixed",
        "discount_value": D("7.25"),
        "expires_at": START + timedelta(days=3),
        "scope": {"product_ids": ["mug"]},
        "max_uses": 2,
    }
    campaign = create_campaign(ledger, RETAILER, "Kept", "KEPT", 3, template, max_discount_total=D("10.00"))
    other = reopened(database_url, clock)
    open_ledgers.append(other)
    read = other.get_campaign(RETAILER, campaign.id)
    assert (read.max_discount_total, read.generated, read.prefix) == (D("10.00"), 3, "KEPT")
    assert {k: read.template[k] for k in template} == {**template, "scope": {"product_ids": ["mug"]}}
    codes = campaign_codes(other, campaign.id)
    assert apply(other, RETAILER, codes[0], None, items=[item("mug", "20.00")]).quote.discount_amount == D("7.25")
    assert other.get_campaign(RETAILER, campaign.id).discount_total == D("7.25")
