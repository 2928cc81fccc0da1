"""`verify` checks the redemption log against the event log: each `redemptions` row equals its
Redemption's events, none is missing, and every daily-figures bucket holds the sums of its rows.
Each violation is planted in the read model behind the projection's back."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from uuid import UUID

import psycopg
import pytest

from ledger.application import CouponLedger
from projections.coupons import CouponsView, construct_view
from projections.verify import verify
from tests.support.commands import apply, create_coupon, reverse
from tests.support.postgres import project_to_head

D = Decimal


@pytest.fixture
def view(env: dict[str, str]) -> Iterator[CouponsView]:
    view = construct_view(env)
    yield view
    view.datastore.close()


@pytest.fixture
def history(database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID) -> list[UUID]:
    """Three uses of a coupon (one by a customer), the second given back, all projected."""
    create_coupon(ledger, retailer_id, "LOGGED", "percentage", D("10"), max_uses=10)
    ids = [
        apply(ledger, retailer_id, "LOGGED", D("100.00")).redemption_id,
        apply(ledger, retailer_id, "LOGGED", D("50.00")).redemption_id,
        apply(ledger, retailer_id, "LOGGED", D("20.00"), customer_id="c-1").redemption_id,
    ]
    reverse(ledger, retailer_id, ids[1])
    project_to_head(env, database_url)
    return ids


def change(url: str, statement: str, *params: object) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute(statement, params).rowcount == 1


def test_a_projected_redemption_log_is_clean(ledger: CouponLedger, view: CouponsView, history: list[UUID]) -> None:
    assert verify(ledger, view).violations == []


def test_a_missing_redemption_row_is_named(
    database_url: str, ledger: CouponLedger, view: CouponsView, history: list[UUID]
) -> None:
    change(database_url, "DELETE FROM redemptions WHERE id = %s", history[0])
    violations = verify(ledger, view).violations
    assert f"read model lacks redemption {history[0]} (projected through" in "\n".join(violations)
    # Its bucket no longer matches the rows either.
    assert any("read model bucket" in v and "LOGGED" in v for v in violations)


def test_an_altered_amount_and_a_lost_reversal_are_named(
    database_url: str, ledger: CouponLedger, view: CouponsView, history: list[UUID]
) -> None:
    change(database_url, "UPDATE redemptions SET discount_amount = 1.00 WHERE id = %s", history[0])
    change(database_url, "UPDATE redemptions SET reversed_at = NULL WHERE id = %s", history[1])
    violations = "\n".join(verify(ledger, view).violations)
    assert f"read model redemption {history[0]}: discount_amount 1.00 != 10.00" in violations
    assert f"read model redemption {history[1]}: reversed_at None != " in violations


def test_a_bucket_that_disagrees_with_its_rows_is_named(
    database_url: str, ledger: CouponLedger, view: CouponsView, history: list[UUID]
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        updated = conn.execute("UPDATE redemption_buckets SET discount_total = discount_total + 5").rowcount
    assert updated >= 1
    violations = verify(ledger, view).violations
    assert violations and all("read model bucket" in v and "LOGGED" in v for v in violations)
    assert len(violations) == updated
    if updated == 1:  # the history fell within one 15-minute bucket (else the sums are split)
        assert violations[0].endswith("its redemptions make 3, 1, 12.00, 108.00")


def test_a_row_the_log_never_made_is_named(
    database_url: str, ledger: CouponLedger, view: CouponsView, history: list[UUID]
) -> None:
    forged = UUID(int=7)
    change(
        database_url,
        "INSERT INTO redemptions SELECT %s, retailer_id, coupon_id, code, campaign_id, customer_id, order_id,"
        " occurred_at, original_subtotal, discount_amount, final_total, reversed_at FROM redemptions WHERE id = %s",
        forged,
        history[0],
    )
    violations = "\n".join(verify(ledger, view).violations)
    assert f"read model has redemption {forged} that the event log does not have" in violations
