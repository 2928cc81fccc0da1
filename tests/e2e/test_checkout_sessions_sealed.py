"""Sealed checkout sessions, and the cap on the holds of one shopper, over HTTP.

A session's creation answers a client_secret; a publishable-key caller (a web page, whose key
anybody can copy) must send it as X-Client-Secret on every later call on the session, or the
session is NOT_FOUND exactly like a missing one; a secret key needs none. A publishable-key
shopper holds a coupon use or stock in at most COUPON_LEDGER_MAX_HOLDS_PER_SHOPPER sessions at
once, per client address and per customer_id: past it, 429 RATE_LIMITED with Retry-After.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.support.http import Api, Sql, assert_error
from tests.support.postgres import race

SESSIONS = "/v1/checkout/sessions"
CAP = 2
_users = itertools.count(90_001)


def items(product_id: int, quantity: int = 1) -> list[dict[str, int]]:
    return [{"product_id": product_id, "quantity": quantity}]


def create(api: Api, product_id: int, session_id: str | None = None, **headers: str) -> httpx.Response:
    body: dict[str, Any] = {"items": items(product_id)}
    if session_id is not None:
        body["session_id"] = session_id
    return api.post(SESSIONS, json=body, headers=headers or None)


def secret(value: str) -> dict[str, str]:
    return {"X-Client-Secret": value}


# --- sealed sessions ------------------------------------------------------------------------------------


def test_a_session_answers_a_client_secret_that_publishable_calls_on_it_must_send(api: Api, sql: Sql) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    api.create_coupon("SEALED10")
    page = api.publishable
    created = create(page, tote["id"])
    assert created.status_code == 201, created.text
    sid, client_secret = created.json()["session_id"], created.json()["client_secret"]
    assert re.fullmatch(r"cs_[A-Za-z0-9_-]{24}", sid)  # chosen by the server
    assert re.fullmatch(re.escape(sid) + r"_secret_[A-Za-z0-9_-]{32}", client_secret)
    # Stored hashed, never as given.
    assert sql(
        "SELECT client_secret_hash FROM checkout_sessions WHERE retailer_id = %s AND id = %s", api.retailer_id, sid
    ) == [(hashlib.sha256(client_secret.encode()).hexdigest(),)]
    missing = assert_error(page.get(f"{SESSIONS}/cs_missing"), 404, "NOT_FOUND")
    for headers in (None, secret("wrong"), secret(client_secret + "x"), secret(f"cs_missing_secret_{'a' * 32}")):
        calls = (
            page.get(f"{SESSIONS}/{sid}", headers=headers),
            page.post(f"{SESSIONS}/{sid}/coupon", json={"code": "SEALED10"}, headers=headers),
            page.delete(f"{SESSIONS}/{sid}/coupon", headers=headers),
            page.post(f"{SESSIONS}/{sid}/hold-inventory", headers=headers),
            create(page, tote["id"], sid, **(headers or {})),
        )
        for response in calls:  # exactly like a missing session
            details = assert_error(response, 404, "NOT_FOUND")
            assert details == {"session_id": sid} and set(missing) == {"session_id"}
            assert response.json()["error"]["message"] == f"Checkout session {sid} does not exist."
    assert api.get(f"{SESSIONS}/{sid}").json()["coupon"] is None  # nothing was done
    # With its secret, the page may do everything; a secret key needs none.
    opened = secret(client_secret)
    assert page.get(f"{SESSIONS}/{sid}", headers=opened).status_code == 200
    applied = page.post(f"{SESSIONS}/{sid}/coupon", json={"code": "SEALED10"}, headers=opened)
    assert applied.status_code == 200, applied.text
    assert page.post(f"{SESSIONS}/{sid}/hold-inventory", headers=opened).status_code == 200
    resynced = create(page, tote["id"], sid, **opened)
    assert resynced.status_code == 200 and resynced.json()["client_secret"] is None  # shown once only
    assert api.get(f"{SESSIONS}/{sid}").json()["coupon"]["code"] == "SEALED10"
    order = api.post("/v1/checkout", json={"session_id": sid, "user_id": next(_users)})
    assert order.status_code == 201, order.text
    assert order.json()["coupon_code"] == "SEALED10"


def test_a_publishable_key_cannot_take_over_a_session_id_another_created(api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    mug = api.add_product("Mug", "4.00", 5)
    owner = create(api.publishable, tote["id"], "cart-chosen-by-a-page")
    assert owner.status_code == 201, owner.text
    by_server = create(api, tote["id"], "cart-chosen-by-the-server")
    assert by_server.status_code == 201 and by_server.json()["client_secret"]
    for sid in ("cart-chosen-by-a-page", "cart-chosen-by-the-server"):
        # Another page picks the same id: it neither re-syncs nor sees the session.
        assert_error(create(api.publishable, mug["id"], sid), 404, "NOT_FOUND")
        assert_error(create(api.publishable, mug["id"], sid, **secret("guessed")), 404, "NOT_FOUND")
        assert api.get(f"{SESSIONS}/{sid}").json()["items"][0]["name"] == "Tote"
    # The secret of one session opens no other.
    other_secret = secret(owner.json()["client_secret"])
    assert_error(api.publishable.get(f"{SESSIONS}/cart-chosen-by-the-server", headers=other_secret), 404, "NOT_FOUND")
    # Its creator re-syncs it with its secret.
    resynced = create(api.publishable, mug["id"], "cart-chosen-by-a-page", **other_secret)
    assert resynced.status_code == 200 and resynced.json()["items"][0]["name"] == "Mug"


def test_a_replayed_creation_answers_the_same_client_secret(api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    first = create(api.publishable, tote["id"], **{"Idempotency-Key": "create-once"})
    again = create(api.publishable, tote["id"], **{"Idempotency-Key": "create-once"})
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["client_secret"] == first.json()["client_secret"]
    sid = first.json()["session_id"]
    opened = api.publishable.get(f"{SESSIONS}/{sid}", headers=secret(first.json()["client_secret"]))
    assert opened.status_code == 200


# --- holds per shopper ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def capped_app(e2e_database_url: str) -> Iterator[FastAPI]:
    """The same database, served by an app that lets a shopper hold in at most CAP sessions."""
    app = create_app(Settings(database_url=e2e_database_url, max_holds_per_shopper=CAP, run_projections=False))
    with TestClient(app):
        yield app


def shopper_at(app: FastAPI, api: Api, address: str) -> Api:
    """The retailer's publishable key, called from ``address``."""
    client = TestClient(app, client=(address, 50000))
    return Api(client, api.retailer_id, api.publishable_key, api.publishable_key)


def sealed_session(page: Api, product_id: int) -> tuple[str, dict[str, str]]:
    created = create(page, product_id)
    assert created.status_code == 201, created.text
    return created.json()["session_id"], secret(created.json()["client_secret"])


def apply(page: Api, sid: str, opened: dict[str, str], code: str, customer_id: str | None = None) -> httpx.Response:
    body = {"code": code} if customer_id is None else {"code": code, "customer_id": customer_id}
    return page.post(f"{SESSIONS}/{sid}/coupon", json=body, headers=opened)


def test_one_address_holds_coupons_or_stock_in_at_most_the_capped_number_of_sessions(
    capped_app: FastAPI, api: Api
) -> None:
    tote = api.add_product("Tote", "10.00", 50)
    api.create_coupon("CAPPED10")
    here = shopper_at(capped_app, api, "203.0.113.7")
    sessions = [sealed_session(here, tote["id"]) for _ in range(CAP + 1)]
    (first, first_secret), (second, second_secret), (third, third_secret) = sessions
    assert apply(here, first, first_secret, "CAPPED10").status_code == 200
    assert here.post(f"{SESSIONS}/{second}/hold-inventory", headers=second_secret).status_code == 200
    # A session already holding may change its hold: it is not one more.
    assert apply(here, second, second_secret, "CAPPED10").status_code == 200
    refused = apply(here, third, third_secret, "CAPPED10")
    details = assert_error(refused, 429, "RATE_LIMITED")
    assert details["limit"] == CAP and details["shopper"] == "client_address"
    assert 1 <= int(refused.headers["Retry-After"]) <= 30 * 60
    assert_error(here.post(f"{SESSIONS}/{third}/hold-inventory", headers=third_secret), 429, "RATE_LIMITED")
    assert api.get(f"{SESSIONS}/{third}").json()["coupon"] is None  # nothing was held
    assert api.coupon("CAPPED10")["status"] == "active"
    # Another address is another shopper; a secret key is not capped.
    there = shopper_at(capped_app, api, "198.51.100.4")
    sid, opened = sealed_session(there, tote["id"])
    assert apply(there, sid, opened, "CAPPED10").status_code == 200
    server = Api(there.client, api.retailer_id, api.api_key)
    for _ in range(CAP + 1):
        sid = create(server, tote["id"]).json()["session_id"]
        assert server.post(f"{SESSIONS}/{sid}/hold-inventory").status_code == 200
    # Giving a hold up makes room again.
    released = here.delete(f"{SESSIONS}/{first}/coupon", headers=first_secret)
    assert released.status_code == 200, released.text
    fourth, fourth_secret = sealed_session(here, tote["id"])
    assert apply(here, fourth, fourth_secret, "CAPPED10").status_code == 200


def test_one_customer_id_holds_coupons_in_at_most_the_capped_number_of_sessions_from_any_address(
    capped_app: FastAPI, api: Api
) -> None:
    tote = api.add_product("Tote", "10.00", 50)
    api.create_coupon("PERCUSTOMER")
    held = []
    for index in range(CAP):
        page = shopper_at(capped_app, api, f"192.0.2.{index + 1}")
        sid, opened = sealed_session(page, tote["id"])
        assert apply(page, sid, opened, "PERCUSTOMER", customer_id="shopper-42").status_code == 200
        held.append(sid)
    elsewhere = shopper_at(capped_app, api, "192.0.2.200")
    sid, opened = sealed_session(elsewhere, tote["id"])
    details = assert_error(apply(elsewhere, sid, opened, "PERCUSTOMER", customer_id="shopper-42"), 429, "RATE_LIMITED")
    assert details["shopper"] == "customer_id"
    assert apply(elsewhere, sid, opened, "PERCUSTOMER", customer_id="shopper-43").status_code == 200


def test_concurrent_holds_from_one_address_never_pass_the_cap(capped_app: FastAPI, api: Api) -> None:
    tote = api.add_product("Tote", "10.00", 50)
    api.create_coupon("RACECAP")
    here = shopper_at(capped_app, api, "203.0.113.99")
    sessions = [sealed_session(here, tote["id"]) for _ in range(8)]
    calls = [partial(apply, here, sid, opened, "RACECAP") for sid, opened in sessions[:4]]
    calls += [partial(here.post, f"{SESSIONS}/{sid}/hold-inventory", headers=opened) for sid, opened in sessions[4:]]
    results = race(calls)
    statuses = sorted(r.status_code for r in results if isinstance(r, httpx.Response))
    assert len(statuses) == len(calls), results
    assert statuses.count(200) == CAP and statuses.count(429) == len(calls) - CAP, statuses
    holding = [
        sid
        for sid, _ in sessions
        if (lambda s: s["coupon"] is not None or s["inventory_hold"] is not None)(api.get(f"{SESSIONS}/{sid}").json())
    ]
    assert len(holding) == CAP
