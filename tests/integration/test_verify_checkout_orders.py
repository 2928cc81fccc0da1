"""`coupon-ledger verify` checks every order placed with a coupon against its redemption: the
order of `POST /v1/checkout` with a coupon_code, and the order that confirms a checkout session's
hold. What was made at checkout is known from the order's coupon row, never from an idempotency
key: a client's apply keyed `order:<n>` is no checkout redemption."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from api.retailers import Retailers
from api.shop.orders import Checkout, write
from ledger.application import CouponLedger
from ledger.commands import Receipt
from projections.coupons import CouponsView, construct_view
from projections.verify import verify
from tests.support.commands import apply, confirm, create_coupon, reserve

D = Decimal


@pytest.fixture
def view(env: dict[str, str]) -> Iterator[CouponsView]:
    view = construct_view(env)
    yield view
    view.datastore.close()


@pytest.fixture
def pool(database_url: str) -> Iterator[ConnectionPool]:
    with ConnectionPool(database_url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        yield pool


@pytest.fixture
def shop(pool: ConnectionPool) -> UUID:
    return Retailers(pool).create(f"shop-{uuid4().hex[:8]}").retailer_id


def next_order_id(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT nextval(pg_get_serial_sequence('orders', 'id'))").fetchone()
    assert row is not None
    return int(row[0])


def session_order(ledger: CouponLedger, database_url: str, shop: UUID, code: str) -> tuple[int, UUID]:
    """An order placed by confirming a hold, as a checkout session's order is: the order and its
    coupon row written in the confirm's transaction."""
    hold = reserve(ledger, shop, code, D("40.00"), customer_id="7")
    order_id = next_order_id(database_url)

    def write_order(conn: Any, receipt: Receipt) -> Receipt:
        write(conn, order_id, shop, 7, D("40.00"), receipt, None)
        return receipt

    receipt = confirm(ledger, shop, hold.reservation_id, order_id=str(order_id), also=write_order)
    return order_id, receipt.redemption_id


def test_orders_placed_with_a_coupon_are_clean_until_an_order_disagrees_with_its_redemption(
    database_url: str, ledger: CouponLedger, pool: ConnectionPool, shop: UUID, view: CouponsView
) -> None:
    create_coupon(ledger, shop, "TENOFF", "fixed", D("10.00"))
    checkout = Checkout(pool, ledger)
    product = checkout.add_product(shop, "Mug", D("12.50"), 10)
    checkout.place_order(shop, 7, [(product.id, 2)], "TENOFF")
    checkout.place_order(shop, 7, [(product.id, 1)], None)
    confirmed_order, confirmed = session_order(ledger, database_url, shop, "TENOFF")
    assert verify(ledger, view).violations == []

    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE orders SET total = total + 1 WHERE id = %s", (confirmed_order,))
    violations = verify(ledger, view).violations
    assert violations == [
        f"order {confirmed_order} of retailer {shop} disagrees with its redemption {confirmed}: total 31.00 != 30.00"
    ]


def test_an_order_coupon_row_naming_no_redemption_is_named(
    database_url: str, ledger: CouponLedger, pool: ConnectionPool, shop: UUID, view: CouponsView
) -> None:
    create_coupon(ledger, shop, "FIVEOFF", "fixed", D("5.00"))
    checkout = Checkout(pool, ledger)
    product = checkout.add_product(shop, "Tote", D("24.00"), 10)
    checkout.place_order(shop, 8, [(product.id, 1)], "FIVEOFF")
    nowhere = uuid4()
    with psycopg.connect(database_url) as conn:
        row = conn.execute("UPDATE order_coupons SET redemption_id = %s RETURNING order_id", (nowhere,)).fetchone()
    assert row is not None
    violations = verify(ledger, view).violations
    assert violations == [
        f"order {row[0]} of retailer {shop} used coupon FIVEOFF as redemption {nowhere}, which is not recorded"
    ]


def test_a_client_apply_keyed_like_a_checkout_order_is_no_violation(
    ledger: CouponLedger, shop: UUID, view: CouponsView
) -> None:
    create_coupon(ledger, shop, "KEYED", "fixed", D("5.00"))
    apply(ledger, shop, "KEYED", D("50.00"), idempotency_key="order:987654321", order_id="987654321")
    apply(ledger, shop, "KEYED", D("50.00"), idempotency_key="order:42", order_id="42")
    assert verify(ledger, view).violations == []
