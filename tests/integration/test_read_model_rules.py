"""The `coupons` read model holds every term of a coupon: window, limits, cap, scope, public, campaign,
archiving; uses_count counts reversals back; status (scheduled included) and campaign filter in SQL.
Projected in one batch or event by event, the rows are the same and match the aggregates."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from ledger.application import CouponLedger
from ledger.domain import Item
from projections.coupons import CouponsProjection, CouponsView, construct_view
from projections.runner import BatchingProjectionRunner
from tests.support.commands import apply, archive, create_campaign, create_coupon, deactivate, reverse, update_coupon
from tests.support.postgres import head, project_to_head

NOW = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
COLUMNS = (
    "code, discount_type, discount_value, min_order_value, expiry_date, max_uses, uses_count, is_active,"
    " starts_at, max_uses_per_customer, max_discount_amount, scope, public, campaign_id, archived_at, version"
)


def rows(url: str, retailer_id: UUID) -> dict[str, dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        found = conn.execute(f"SELECT {COLUMNS} FROM coupons WHERE retailer_id = %s", (retailer_id,)).fetchall()
    return {row["code"]: row for row in found}


def reset_read_model(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM coupons")
        conn.execute("DELETE FROM coupons_projection_tracking WHERE application_name <> '__migration__'")


def project_in_one_batch(env: dict[str, str], url: str) -> None:
    target = head(url)
    with BatchingProjectionRunner(
        application_class=CouponLedger,
        projection_class=CouponsProjection,
        view_class=CouponsView,
        env=env,
        max_batch_size=100_000,
    ) as runner:
        runner.wait(target, timeout=30)


def history(ledger: CouponLedger, retailer_id: UUID) -> UUID:
    """Every kind of event the read model handles, several on the same coupon; returns a campaign id."""
    create_coupon(
        ledger,
        retailer_id,
        "LATER",
        "percentage",
        Decimal("15"),
        starts_at=NOW + timedelta(days=3),
        expires_at=NOW + timedelta(days=9),
        max_uses_per_customer=2,
        max_discount_amount=Decimal("20.00"),
        scope={"product_ids": ["p-1", "p-2"], "excluded_category_ids": ["gift-cards"]},
        public=True,
    )
    create_coupon(ledger, retailer_id, "SHIP", "free_shipping", Decimal("0"), max_uses=3)
    create_coupon(ledger, retailer_id, "GONE", "fixed", Decimal("5.00"))
    create_coupon(ledger, retailer_id, "BUSY", "fixed", Decimal("5.00"), max_uses=4)
    first = apply(ledger, retailer_id, "BUSY", Decimal("50.00"), customer_id="c-1")
    apply(ledger, retailer_id, "BUSY", Decimal("50.00"), customer_id="c-2")
    apply(ledger, retailer_id, "BUSY", None, items=[Item("p-9", 2, Decimal("10.00"))])
    reverse(ledger, retailer_id, first.redemption_id, "order cancelled")
    update_coupon(ledger, retailer_id, "BUSY", {"max_uses": 2, "min_order_value": Decimal("10.00"), "public": True})
    apply(ledger, retailer_id, "SHIP", Decimal("30.00"), shipping_amount=Decimal("4.99"))
    update_coupon(ledger, retailer_id, "LATER", {"scope": None, "expires_at": None})
    deactivate(ledger, retailer_id, "SHIP")
    archive(ledger, retailer_id, "GONE")
    campaign = create_campaign(
        ledger,
        retailer_id,
        "Spring",
        "spr",
        3,
        {"discount_type": "fixed", "discount_value": Decimal("2.00"), "max_uses": 1},
    )
    return campaign.id


def test_the_read_model_holds_every_term_and_counts_reversals_back_in_one_batch_or_one_by_one(
    env: dict[str, str], database_url: str, retailer_id: UUID
) -> None:
    ledger = CouponLedger(env, clock=lambda: NOW)
    try:
        campaign_id = history(ledger, retailer_id)
    finally:
        ledger.close()

    project_in_one_batch(env, database_url)
    batched = rows(database_url, retailer_id)
    reset_read_model(database_url)
    project_to_head(env, database_url)
    one_by_one = rows(database_url, retailer_id)
    assert batched == one_by_one

    busy, later, ship, gone = (batched[c] for c in ("BUSY", "LATER", "SHIP", "GONE"))
    assert busy["uses_count"] == 2  # three made, one reversed
    assert (busy["max_uses"], busy["min_order_value"], busy["public"]) == (2, Decimal("10.00"), True)
    assert later["starts_at"] == NOW + timedelta(days=3)
    assert later["expiry_date"] is None and later["scope"] is None
    assert (later["max_uses_per_customer"], later["max_discount_amount"], later["public"]) == (
        2,
        Decimal("20.00"),
        True,
    )
    assert ship["discount_type"] == "free_shipping" and ship["uses_count"] == 1 and not ship["is_active"]
    assert gone["archived_at"] is not None
    generated = [row for row in batched.values() if row["campaign_id"] == campaign_id]
    assert len(generated) == 3 and all(row["code"].startswith("SPR") and row["max_uses"] == 1 for row in generated)


def test_lists_filter_every_status_and_campaign_in_sql_and_leave_archived_coupons_out(
    env: dict[str, str], database_url: str, retailer_id: UUID
) -> None:
    ledger = CouponLedger(env, clock=lambda: NOW)
    try:
        campaign_id = history(ledger, retailer_id)
        create_coupon(ledger, retailer_id, "OLD", "fixed", Decimal("1.00"), expires_at=NOW - timedelta(days=1))
    finally:
        ledger.close()
    project_to_head(env, database_url)
    view = construct_view(env)
    try:
        listed: Callable[..., list[str]] = lambda **kw: [  # noqa: E731
            r.code for r in view.list_coupons(retailer_id, NOW, after_code=None, limit=100, **kw)
        ]
        assert listed(status=None) == sorted(
            ["BUSY", "LATER", "OLD", "SHIP", *listed(status=None, campaign_id=campaign_id)]
        )
        assert listed(status="scheduled") == ["LATER"]
        assert listed(status="count_expired") == ["BUSY"]
        assert listed(status="inactive") == ["SHIP"]
        assert listed(status="time_expired") == ["OLD"]
        assert "GONE" not in listed(status=None)
        in_campaign = listed(status=None, campaign_id=campaign_id)
        assert len(in_campaign) == 3 and listed(status="active", campaign_id=campaign_id) == in_campaign
        streamed = [r.code for r in view.campaign_coupons(retailer_id, campaign_id, NOW, page_size=2)]
        assert streamed == in_campaign
        row = view.list_coupons(retailer_id, NOW, "scheduled", None, 10)[0]
        assert row.scope is None and row.public and row.starts_at == NOW + timedelta(days=3)
    finally:
        view.datastore.close()
