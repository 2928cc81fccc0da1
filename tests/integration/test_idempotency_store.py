"""The Idempotency-Key store (api/idempotency.py) with the checkout, on PostgreSQL: the order and
its replay record are committed together or not at all, whatever crashes, so a retried checkout can
never place a second order.

A crash is played by its traces: a claim whose lease has passed is what a request leaves when its
process dies (or stalls) before answering; the next request with the key takes it over. The first
request, if it wakes up, can no longer write its order: recording its response is part of the
order's transaction and checks the claim is still its own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from uuid import UUID

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from api.idempotency import Claim, ClaimLost, IdempotencyStore, InFlight, StoredResponse
from api.retailers import Retailers
from api.routes.checkout import order_body, recorder
from api.shop.errors import ShopError
from api.shop.orders import Checkout
from api.shop.sessions import Sessions
from ledger.application import CouponLedger
from ledger.errors import LedgerError
from tests.support.commands import apply, create_coupon
from tests.support.postgres import redeemed_events, scalar

ROUTE = ("POST", "/v1/checkout")


@pytest.fixture
def pool(database_url: str) -> Iterator[ConnectionPool]:
    with ConnectionPool(database_url, min_size=1, max_size=4, kwargs={"autocommit": True}, open=True) as pool:
        yield pool


@pytest.fixture
def store(pool: ConnectionPool) -> IdempotencyStore:
    return IdempotencyStore(pool, lease_seconds=30, wait_seconds=1)


def lease_passes(url: str, retailer_id: UUID, key: str) -> None:
    """What a stalled or dead request's claim looks like once its lease is over."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE idempotency_keys SET lease_until = clock_timestamp() - interval '1 second'"
            " WHERE retailer_id = %s AND key = %s",
            (retailer_id, key),
        )


def claim(store: IdempotencyStore, retailer_id: UUID, key: str, fingerprint: str = "same") -> Claim:
    claimed = store.claim(retailer_id, key, fingerprint, *ROUTE)
    assert isinstance(claimed, Claim), claimed
    return claimed


def orders(url: str, retailer_id: UUID) -> int:
    return int(scalar(url, "SELECT count(*) FROM orders WHERE retailer_id = %s", (retailer_id,)))


def test_the_order_and_its_response_are_stored_together(
    database_url: str, pool: ConnectionPool, ledger: CouponLedger, store: IdempotencyStore
) -> None:
    """The response is in the order's transaction: once the order is there, a retry replays it,
    even if the process died before it could answer (nothing else was stored after the order)."""
    retailer_id = Retailers(pool).create("Together").retailer_id
    checkout = Checkout(pool, ledger)
    product = checkout.add_product(retailer_id, "Kettle", Decimal("30.00"), 5)
    create_coupon(ledger, retailer_id, "TOGETHER", "percentage", Decimal("10"))
    first = claim(store, retailer_id, "order-1")
    response = checkout.place_order(retailer_id, 1, [(product.id, 1)], "TOGETHER", recorder(first))
    assert store.claim(retailer_id, "order-1", "same", *ROUTE) == StoredResponse(201, order_body(response))
    assert store.claim(retailer_id, "order-1", "same", *ROUTE) == StoredResponse(201, order_body(response))
    assert orders(database_url, retailer_id) == 1


def test_a_failed_order_stores_no_response(
    database_url: str, pool: ConnectionPool, ledger: CouponLedger, store: IdempotencyStore
) -> None:
    retailer_id = Retailers(pool).create("Refused").retailer_id
    checkout = Checkout(pool, ledger)
    product = checkout.add_product(retailer_id, "Kettle", Decimal("30.00"), 5)
    create_coupon(ledger, retailer_id, "USEDUP", "percentage", Decimal("10"), max_uses=1)
    apply(ledger, retailer_id, "USEDUP", Decimal("10"))
    first = claim(store, retailer_id, "order-2")
    with pytest.raises(LedgerError) as refused:
        checkout.place_order(retailer_id, 1, [(product.id, 1)], "USEDUP", recorder(first))
    assert refused.value.code == "USAGE_LIMIT_REACHED"
    assert first.recorded is None
    # Still only claimed (the route then frees it): no response was kept with the refused order.
    assert isinstance(store.claim(retailer_id, "order-2", "same", *ROUTE), InFlight)
    store.abandon(first)
    assert isinstance(store.claim(retailer_id, "order-2", "same", *ROUTE), Claim)
    assert orders(database_url, retailer_id) == 0


def test_a_claim_taken_over_after_its_lease_cannot_place_its_order(
    database_url: str, pool: ConnectionPool, ledger: CouponLedger, store: IdempotencyStore
) -> None:
    retailer_id = Retailers(pool).create("Taken Over").retailer_id
    checkout = Checkout(pool, ledger)
    product = checkout.add_product(retailer_id, "Kettle", Decimal("30.00"), 5)
    coupon = create_coupon(ledger, retailer_id, "SLOW10", "percentage", Decimal("10"))
    stalled = claim(store, retailer_id, "order-3")
    assert isinstance(store.claim(retailer_id, "order-3", "same", *ROUTE), InFlight)  # its lease still runs
    lease_passes(database_url, retailer_id, "order-3")
    retry = claim(store, retailer_id, "order-3", fingerprint="whatever the retry sends")
    # The stalled request wakes up: with a coupon (the order written by the ledger writer) or
    # without (a transaction of its own), nothing it writes is kept.
    with pytest.raises(ClaimLost):
        checkout.place_order(retailer_id, 1, [(product.id, 1)], "SLOW10", recorder(stalled))
    with pytest.raises(ClaimLost):
        checkout.place_order(retailer_id, 1, [(product.id, 1)], None, recorder(stalled))
    assert orders(database_url, retailer_id) == 0
    assert redeemed_events(database_url, coupon.id) == 0
    response = checkout.place_order(retailer_id, 1, [(product.id, 1)], "SLOW10", recorder(retry))
    replay = store.claim(retailer_id, "order-3", "whatever the retry sends", *ROUTE)
    assert replay == StoredResponse(201, order_body(response))
    assert orders(database_url, retailer_id) == 1
    assert redeemed_events(database_url, coupon.id) == 1
    assert scalar(database_url, "SELECT stock FROM products WHERE id = %s", (product.id,)) == 4


def test_a_session_checkout_taken_over_confirms_its_hold_once(
    database_url: str, pool: ConnectionPool, ledger: CouponLedger, store: IdempotencyStore
) -> None:
    retailer_id = Retailers(pool).create("Session Taken Over").retailer_id
    sessions = Sessions(pool, ledger, ttl_seconds=1800)
    checkout = Checkout(pool, ledger, sessions)
    product = checkout.add_product(retailer_id, "Kettle", Decimal("30.00"), 5)
    coupon = create_coupon(ledger, retailer_id, "HOLDME", "percentage", Decimal("10"), max_uses=1)

    async def prepare() -> None:
        await sessions.sync(retailer_id, "cart-1", [(product.id, 2)], None)
        await sessions.apply_coupon(retailer_id, "cart-1", "HOLDME", None)

    asyncio.run(prepare())
    sessions.hold_inventory(retailer_id, "cart-1", None)
    stalled = claim(store, retailer_id, "pay-1")
    lease_passes(database_url, retailer_id, "pay-1")
    retry = claim(store, retailer_id, "pay-1")
    with pytest.raises(ClaimLost):
        asyncio.run(checkout.place_session_order(retailer_id, "cart-1", 7, recorder(stalled)))
    session = sessions.find(retailer_id, "cart-1")
    assert session.stored_status == "open" and session.coupon is not None
    assert ledger.get_reservation(retailer_id, session.coupon.reservation_id).status == "held"
    response = asyncio.run(checkout.place_session_order(retailer_id, "cart-1", 7, recorder(retry)))
    assert store.claim(retailer_id, "pay-1", "same", *ROUTE) == StoredResponse(201, order_body(response))
    with pytest.raises(ShopError) as again:  # another request (no key) on the completed session
        asyncio.run(checkout.place_session_order(retailer_id, "cart-1", 7))
    assert again.value.code == "SESSION_COMPLETED"
    assert redeemed_events(database_url, coupon.id) == 1
    assert orders(database_url, retailer_id) == 1
    assert scalar(database_url, "SELECT stock FROM products WHERE id = %s", (product.id,)) == 3
