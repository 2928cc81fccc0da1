"""What a checkout or a session call answers is what was committed, on PostgreSQL, when the
ledger writer's transaction is tried again.

The writer decides a batch of commands and runs their works (the order, the session row) in the
transaction that saves their events. That transaction can be tried again: another process wrote
the same coupon first (the store's version check), or a sibling command's work was refused (the
others are then saved without it). A caller must hear only what the attempt that committed
wrote: never a body built in an attempt that was rolled back, never "done" for a change that was
not stored.

The races are made certain rather than hoped for: the test holds a product row's lock, so the
writer's transaction stops in the middle (its decision made, its works waiting for the row), and
the test changes the world under it (a PATCH through a second app, as a second server process
would, or stock that runs out) before letting it go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar
from uuid import uuid4

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.support.http import Api

T = TypeVar("T")


@pytest.fixture
def apps(database_url: str) -> Iterator[list[TestClient]]:
    """Two apps on one database: two ledger writers, as two server processes would have."""
    clients: list[TestClient] = []
    try:
        for _ in range(2):
            client = TestClient(create_app(Settings(database_url=database_url, run_projections=False)))
            clients.append(client.__enter__())
        yield clients
    finally:
        for client in reversed(clients):
            client.__exit__(None, None, None)


def retailer(client: TestClient) -> Api:
    app: FastAPI = client.app  # type: ignore[assignment]
    created = app.state.services.retailers.create(f"committed-{uuid4().hex[:12]}")
    return Api(client, created.retailer_id, created.api_key, created.publishable_key)


def on(client: TestClient, api: Api) -> Api:
    """The same retailer, calling another app."""
    return Api(client, api.retailer_id, api.api_key, api.publishable_key)


class Background(threading.Thread):
    """A call on a thread of its own; ``result()`` waits for it."""

    def __init__(self, call: Callable[[], T]) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.value: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.value = self.call()
        except BaseException as error:
            self.error = error

    def result(self, timeout: float = 60) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "the call did not finish"
        if self.error is not None:
            raise self.error
        return self.value


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


@contextmanager
def row_locked(url: str, product_id: int) -> Iterator[psycopg.Connection[Any]]:
    """Hold the product's row lock until the block ends (then roll back)."""
    with psycopg.connect(url) as conn:
        conn.execute("SELECT id FROM products WHERE id = %s FOR UPDATE", (product_id,))
        try:
            yield conn
        finally:
            conn.rollback()


def waiting_for_a_lock(url: str) -> int:
    """Backends of this database waiting for a row lock (the writer's, stopped mid-transaction)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def queued(client: TestClient) -> int:
    app: FastAPI = client.app  # type: ignore[assignment]
    return int(app.state.services.ledger.writer.queued)


def checkout(api: Api, product_id: int, code: str, user_id: int, key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else None
    body = {"user_id": user_id, "items": [{"product_id": product_id, "quantity": 1}], "coupon_code": code}
    return api.post("/v1/checkout", json=body, headers=headers)


def stored_order(url: str, order_id: int) -> dict[str, Any]:
    """The order as stored, in the response's terms."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT o.subtotal, o.total, o.created_at, c.discount_amount, c.coupon_code, c.redemption_id"
            " FROM orders o LEFT JOIN order_coupons c ON c.order_id = o.id WHERE o.id = %s",
            (order_id,),
        ).fetchone()
    assert row is not None
    subtotal, total, created_at, discount, code, redemption_id = row
    return {
        "subtotal": f"{subtotal:.2f}",
        "total": f"{total:.2f}",
        "created_at": created_at,
        "discount_amount": f"{discount:.2f}",
        "coupon_code": code,
        "redemption_id": str(redemption_id),
    }


def as_stored(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "subtotal": body["subtotal"],
        "total": body["total"],
        "created_at": datetime.fromisoformat(body["created_at"]),
        "discount_amount": body["discount_amount"],
        "coupon_code": body["coupon_code"],
        "redemption_id": body["redemption_id"],
    }


def test_a_checkout_decided_again_after_another_process_patched_its_coupon_answers_the_committed_order(
    database_url: str, apps: list[TestClient]
) -> None:
    """The redemption is decided with a cap of 10.00; before its transaction commits, another
    process lowers the cap to 3.00; the store's version check makes the writer decide it again.
    The 201 is the order as stored (3.00 off), byte for byte the body a replay of its key returns."""
    first, second = apps
    shop = retailer(first)
    shop.create_coupon("CAPPED", discount_value="10", max_discount_amount="10.00")
    product = shop.add_product("Lamp", "100.00", 10)

    with row_locked(database_url, product["id"]):
        placing = Background(lambda: checkout(shop, product["id"], "CAPPED", 501, key="order-capped-1"))
        wait_until(lambda: waiting_for_a_lock(database_url) >= 1, "the writer waits for the product's row")
        patched = on(second, shop).request("PATCH", "/v1/coupons/CAPPED", json={"max_discount_amount": "3.00"})
        assert patched.status_code == 200, patched.text
    placed = placing.result()

    assert placed.status_code == 201, placed.text
    body = placed.json()
    assert (body["discount_amount"], body["total"]) == ("3.00", "97.00")  # decided again, on the new cap
    assert as_stored(body) == stored_order(database_url, body["id"])
    replay = checkout(shop, product["id"], "CAPPED", 501, key="order-capped-1")
    assert replay.status_code == 201 and replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.content == placed.content


def test_a_checkout_saved_again_without_a_refused_sibling_answers_the_committed_order(
    database_url: str, apps: list[TestClient]
) -> None:
    """Two checkouts in one writer batch; the second's stock runs out under its lock, so its work
    is refused and the batch is saved again without it: the first's order is written a second
    time (a new transaction, a new created_at), and that one is what it answers and what its
    key replays."""
    first, _ = apps
    shop = retailer(first)
    shop.create_coupon("SIBLING", discount_value="10")
    gate = shop.add_product("Gate", "10.00", 10)
    kept = shop.add_product("Kept", "50.00", 10)
    scarce = shop.add_product("Scarce", "20.00", 1)

    with row_locked(database_url, gate["id"]):
        blocker = Background(lambda: checkout(shop, gate["id"], "SIBLING", 601))
        wait_until(lambda: waiting_for_a_lock(database_url) >= 1, "the writer waits for the gate's row")
        placing = Background(lambda: checkout(shop, kept["id"], "SIBLING", 602, key="order-kept-1"))
        refused = Background(lambda: checkout(shop, scarce["id"], "SIBLING", 603))
        wait_until(lambda: queued(first) >= 2, "both checkouts wait for the writer")
        with psycopg.connect(database_url) as conn:  # the scarce product sells out meanwhile
            conn.execute("UPDATE products SET stock = 0 WHERE id = %s", (scarce["id"],))
    assert blocker.result().status_code == 201
    assert refused.result().status_code == 409
    placed = placing.result()

    assert placed.status_code == 201, placed.text
    body = placed.json()
    assert as_stored(body) == stored_order(database_url, body["id"])
    replay = checkout(shop, kept["id"], "SIBLING", 602, key="order-kept-1")
    assert replay.status_code == 201 and replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.content == placed.content


def test_removing_a_session_coupon_in_a_batch_saved_again_without_a_refused_sibling_is_stored(
    database_url: str, apps: list[TestClient]
) -> None:
    """The session's hold had ended already (released through the reservations API), so its
    release has no event to save: only the session row changes. It shares a writer batch with a
    checkout whose work is refused; the batch is saved again without that checkout. The removal
    answers 200 with no coupon only if the row was changed in the transaction that committed:
    the stored session has no coupon either."""
    first, _ = apps
    shop = retailer(first)
    shop.create_coupon("HELD", discount_value="10")
    shop.create_coupon("OTHER", discount_value="10")
    gate = shop.add_product("Gate", "10.00", 10)
    cart = shop.add_product("Cart item", "30.00", 10)
    scarce = shop.add_product("Scarce", "20.00", 1)
    created = shop.post("/v1/checkout/sessions", json={"items": [{"product_id": cart["id"], "quantity": 1}]}).json()
    session_id = created["session_id"]
    headers = {"X-Client-Secret": created["client_secret"]} if created.get("client_secret") else None
    applied = shop.post(f"/v1/checkout/sessions/{session_id}/coupon", json={"code": "HELD"}, headers=headers)
    assert applied.status_code == 200, applied.text
    reservation_id = applied.json()["coupon"]["reservation_id"]
    assert shop.post(f"/v1/reservations/{reservation_id}/release").status_code == 200

    with row_locked(database_url, gate["id"]):
        blocker = Background(lambda: checkout(shop, gate["id"], "OTHER", 701))
        wait_until(lambda: waiting_for_a_lock(database_url) >= 1, "the writer waits for the gate's row")
        removing = Background(lambda: shop.delete(f"/v1/checkout/sessions/{session_id}/coupon", headers=headers))
        refused = Background(lambda: checkout(shop, scarce["id"], "OTHER", 702))
        wait_until(lambda: queued(first) >= 2, "the removal and the checkout wait for the writer")
        with psycopg.connect(database_url) as conn:
            conn.execute("UPDATE products SET stock = 0 WHERE id = %s", (scarce["id"],))
    assert blocker.result().status_code == 201
    assert refused.result().status_code == 409
    removed = removing.result()

    assert removed.status_code == 200, removed.text
    assert removed.json()["coupon"] is None
    stored = shop.get(f"/v1/checkout/sessions/{session_id}", headers=headers).json()
    assert stored["coupon"] is None and stored["discount_amount"] == "0.00"
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT reservation_id, coupon_code FROM checkout_sessions WHERE retailer_id = %s AND id = %s",
            (shop.retailer_id, session_id),
        ).fetchone()
    assert row == (None, None)
