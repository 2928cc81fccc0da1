"""Checkout sessions and Idempotency-Key under real concurrency on PostgreSQL.

- 200 sessions holding 1 unit each of a product with stock 10, all at once: exactly 10 are
  granted; then all 200 check out at once: exactly the 10 holders get an order, stock ends at 0.
- Concurrent coupon calls on one session, through two ledgers (two writers, as two processes
  would have): the session ends with exactly one live hold, the one it knows.
- A checkout retried by 10 threads at once with one Idempotency-Key, spread over two server
  processes: one order and one redemption, in the cart form and in the session form; 10
  concurrent checkouts of one session with different keys: one order.

The service-layer tests call api/shop/sessions.py and api/shop/orders.py from threads (each its own event
loop where the call is async); the last ones run `coupon-ledger serve` processes.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from psycopg_pool import ConnectionPool

from api.database import eventsourcing_env, open_ledger
from api.retailers import Retailers
from api.shop.errors import ShopError
from api.shop.orders import Checkout
from api.shop.sessions import Sessions
from ledger.application import CouponLedger
from tests.support.commands import create_coupon
from tests.support.postgres import Server, auth, cluster, race, redeemed_events, run_cli, scalar

SESSIONS = 200
STOCK = 10


@pytest.fixture
def pool(database_url: str) -> Iterator[ConnectionPool]:
    # Enough connections, and a long enough wait for one, that 200 threads queue rather than fail.
    with ConnectionPool(
        database_url, min_size=2, max_size=16, kwargs={"autocommit": True}, timeout=120, open=True
    ) as pool:
        yield pool


def outcome(result: object) -> str:
    if isinstance(result, ShopError):
        return result.code
    if isinstance(result, BaseException):
        return repr(result)
    return "OK"


def test_two_hundred_concurrent_holds_of_one_unit_on_a_stock_of_ten_grant_exactly_ten(
    database_url: str, pool: ConnectionPool, ledger: CouponLedger
) -> None:
    retailer_id = Retailers(pool).create("Hold Race").retailer_id
    sessions = Sessions(pool, ledger, ttl_seconds=1800)
    checkout = Checkout(pool, ledger, sessions)
    product = checkout.add_product(retailer_id, "Limited print", Decimal("25.00"), STOCK)
    session_ids = [f"race-{i}" for i in range(SESSIONS)]

    async def sync_all() -> None:
        for session_id in session_ids:
            await sessions.sync(retailer_id, session_id, [(product.id, 1)], None)

    asyncio.run(sync_all())

    held = race([partial(sessions.hold_inventory, retailer_id, sid, None) for sid in session_ids])
    assert Counter(outcome(r) for r in held) == {"OK": STOCK, "OUT_OF_STOCK": SESSIONS - STOCK}
    for refused in (r for r in held if isinstance(r, ShopError)):
        assert refused.details["products"] == [{"product_id": product.id, "requested": 1, "available": 0}]
    assert (
        scalar(database_url, "SELECT sum(quantity) FROM inventory_holds WHERE product_id = %s", (product.id,)) == STOCK
    )
    holders = {sid for sid, r in zip(session_ids, held, strict=True) if not isinstance(r, BaseException)}

    # Everybody pays at once: the holders get their unit, nobody else does, stock never goes below 0.
    def pay(session_id: str, user_id: int) -> Any:
        return asyncio.run(checkout.place_session_order(retailer_id, session_id, user_id))

    paid = race([partial(pay, sid, i + 1) for i, sid in enumerate(session_ids)])
    assert Counter(outcome(r) for r in paid) == {"OK": STOCK, "OUT_OF_STOCK": SESSIONS - STOCK}
    placed = {sid for sid, r in zip(session_ids, paid, strict=True) if not isinstance(r, BaseException)}
    assert placed == holders
    assert scalar(database_url, "SELECT stock FROM products WHERE id = %s", (product.id,)) == 0
    assert scalar(database_url, "SELECT count(*) FROM orders WHERE retailer_id = %s", (retailer_id,)) == STOCK
    assert scalar(database_url, "SELECT count(*) FROM inventory_holds WHERE product_id = %s", (product.id,)) == 0


def test_concurrent_coupon_calls_on_one_session_leave_exactly_the_hold_it_knows(
    database_url: str, pool: ConnectionPool, ledger: CouponLedger, open_ledgers: list[CouponLedger]
) -> None:
    """Ten coupons applied at once to one session, by two ledgers (two writers): whatever wins,
    the session names one reservation, that one is held, and every other hold was released
    (or never saved): across the ten coupons exactly one use is held."""
    second = open_ledger(eventsourcing_env(database_url, pool_size=2, max_overflow=4))
    open_ledgers.append(second)
    retailer_id = Retailers(pool).create("Coupon Race").retailer_id
    by_ledger = [Sessions(pool, ledger, 1800), Sessions(pool, second, 1800)]
    product = Checkout(pool, ledger).add_product(retailer_id, "Tote", Decimal("40.00"), 5)
    codes = [f"RACE{i}" for i in range(10)]
    for code in codes:
        create_coupon(ledger, retailer_id, code, "fixed", Decimal("5"), max_uses=3)
    asyncio.run(by_ledger[0].sync(retailer_id, "one-cart", [(product.id, 1)], None))

    def apply(index: int) -> Any:
        sessions = by_ledger[index % 2]
        return asyncio.run(sessions.apply_coupon(retailer_id, "one-cart", codes[index], None))

    results = race([partial(apply, i) for i in range(len(codes))])
    assert all(outcome(r) in ("OK", "SERVICE_UNAVAILABLE") for r in results), results
    session = by_ledger[0].find(retailer_id, "one-cart")
    assert session.coupon is not None
    now = ledger.clock()
    held = {code: ledger.get_coupon(retailer_id, code).held(now) for code in codes}
    assert sum(held.values()) == 1, held
    assert held[session.coupon.code] == 1
    reservation = ledger.get_reservation(retailer_id, session.coupon.reservation_id)
    assert reservation.is_live(now)


# --- a checkout retried concurrently under one key, over two server processes ------------------------


def create_retailer(url: str) -> str:
    created = run_cli(url, "retailer", "create", f"Retry Shop {uuid4().hex[:8]}")
    assert created.returncode == 0, created.stderr
    return str(json.loads(created.stdout.strip().splitlines()[-1])["api_key"])


def post(server: Server, api_key: str, path: str, body: Any, key: str | None = None) -> httpx.Response:
    headers = auth(api_key) | ({"Idempotency-Key": key} if key is not None else {})
    return httpx.post(f"{server.base_url}{path}", json=body, headers=headers, timeout=60)


def retried(servers: list[Server], api_key: str, body: dict[str, Any], key: str | None, times: int = 10) -> list[Any]:
    return race([partial(post, servers[i % len(servers)], api_key, "/v1/checkout", body, key) for i in range(times)])


def assert_one_order_replayed(responses: list[Any]) -> dict[str, Any]:
    """Every answer is the one order (first or replayed), or 409 IN_USE if a retry gave up waiting."""
    ok = [r for r in responses if isinstance(r, httpx.Response) and r.status_code == 201]
    others = [r for r in responses if r not in ok]
    assert ok, responses
    assert len({r.content for r in ok}) == 1, [r.text for r in ok]
    assert sum(1 for r in ok if "Idempotent-Replayed" not in r.headers) <= 1
    for response in others:
        assert isinstance(response, httpx.Response), response
        assert (response.status_code, response.json()["error"]["code"]) == (409, "IDEMPOTENCY_KEY_IN_USE")
    order: dict[str, Any] = ok[0].json()
    return order


@pytest.mark.slow
def test_a_checkout_retried_concurrently_with_one_key_places_one_order(database_url: str, tmp_path: Path) -> None:
    api_key = create_retailer(database_url)
    with cluster(database_url, tmp_path) as running:
        servers = running.start(2)
        product = post(servers[0], api_key, "/v1/products", {"name": "Kettle", "price": "30.00", "stock": 50}).json()
        coupon = post(
            servers[0],
            api_key,
            "/v1/coupons",
            {"code": "RETRY10", "discount_type": "percentage", "discount_value": "10", "max_uses": 100},
        ).json()
        items = [{"product_id": product["id"], "quantity": 2}]

        # The cart form, with a coupon.
        order = assert_one_order_replayed(
            retried(servers, api_key, {"user_id": 901, "items": items, "coupon_code": "RETRY10"}, "retry-cart")
        )
        assert (order["total"], order["coupon_code"]) == ("54.00", "RETRY10")
        assert scalar(database_url, "SELECT count(*) FROM orders WHERE user_id = 901") == 1

        # The session form: cart synced, coupon held, stock held, then the payment retried.
        assert (
            post(servers[0], api_key, "/v1/checkout/sessions", {"session_id": "paid-twice", "items": items}).status_code
            == 201
        )
        assert (
            post(servers[1], api_key, "/v1/checkout/sessions/paid-twice/coupon", {"code": "RETRY10"}).status_code == 200
        )
        assert post(servers[0], api_key, "/v1/checkout/sessions/paid-twice/hold-inventory", {}).status_code == 200
        order = assert_one_order_replayed(
            retried(servers, api_key, {"user_id": 902, "session_id": "paid-twice"}, "retry-session")
        )
        assert order["coupon_code"] == "RETRY10"
        assert scalar(database_url, "SELECT count(*) FROM orders WHERE user_id = 902") == 1

        # One session paid by ten different requests (no key): one order, the rest SESSION_COMPLETED.
        assert (
            post(
                servers[1], api_key, "/v1/checkout/sessions", {"session_id": "paid-by-many", "items": items}
            ).status_code
            == 201
        )
        assert (
            post(servers[0], api_key, "/v1/checkout/sessions/paid-by-many/coupon", {"code": "RETRY10"}).status_code
            == 200
        )
        answers = retried(servers, api_key, {"user_id": 903, "session_id": "paid-by-many"}, None)
        codes = Counter(
            r.status_code if r.status_code == 201 else r.json()["error"]["code"]
            for r in answers
            if isinstance(r, httpx.Response)
        )
        assert codes == {201: 1, "SESSION_COMPLETED": 9}, answers
        assert scalar(database_url, "SELECT count(*) FROM orders WHERE user_id = 903") == 1

        # Three orders, three redemptions of the coupon, six units sold.
        assert redeemed_events(database_url, UUID(coupon["id"])) == 3
        assert scalar(database_url, "SELECT stock FROM products WHERE id = %s", (product["id"],)) == 44
