"""Idempotency-Key on the routes whose keys are kept by api/idempotency.py (not in the ledger): the
checkout in both its forms and every checkout-session call. A retry with the same key and body
answers the first response again (Idempotent-Replayed: true) and does nothing twice; another body
or route is 409 IDEMPOTENCY_KEY_REUSED; a request still in flight is waited for; an error is not
kept; a claim whose request died is taken over after its lease."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from tests.support.http import Api, Sql, assert_error, assert_validation_failed

_users = itertools.count(50_001)
REPLAYED = "Idempotent-Replayed"


def key() -> str:
    return f"key-{uuid4().hex}"


def with_key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def orders_of(sql: Sql, user_id: int) -> int:
    return int(sql("SELECT count(*) FROM orders WHERE user_id = %s", user_id)[0][0])


def assert_replay(first: httpx.Response, again: httpx.Response) -> None:
    assert again.status_code == first.status_code, again.text
    assert again.content == first.content
    assert again.headers[REPLAYED] == "true"
    assert REPLAYED not in first.headers


def test_a_retried_checkout_replays_the_order_and_places_nothing_twice(api: Api, sql: Sql) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    user = next(_users)
    body = {"user_id": user, "items": [{"product_id": tote["id"], "quantity": 2}]}
    k = key()
    first = api.post("/v1/checkout", json=body, headers=with_key(k))
    assert first.status_code == 201, first.text
    again = api.post("/v1/checkout", json=body, headers=with_key(k))
    assert_replay(first, again)
    # The same JSON written differently (key order, spacing) is the same request.
    reordered = api.client.post(
        "/v1/checkout",
        content=f'{{ "items": [ {{"quantity": 2, "product_id": {tote["id"]}}} ], "user_id": {user} }}',
        headers={**api.headers, **with_key(k), "Content-Type": "application/json"},
    )
    assert_replay(first, reordered)
    assert orders_of(sql, user) == 1
    assert api.stock_of(tote["id"]) == 3


def test_a_retried_checkout_with_a_coupon_redeems_once(api: Api, sql: Sql) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    api.create_coupon("ONCE10", max_uses=5)
    user = next(_users)
    body = {"user_id": user, "items": [{"product_id": tote["id"], "quantity": 1}], "coupon_code": "once10"}
    k = key()
    first = api.post("/v1/checkout", json=body, headers=with_key(k))
    assert first.status_code == 201, first.text
    assert first.json()["discount_amount"] == "1.00"
    for _ in range(3):
        assert_replay(first, api.post("/v1/checkout", json=body, headers=with_key(k)))
    assert orders_of(sql, user) == 1
    assert api.coupon("ONCE10")["uses_count"] == 1
    assert [e["type"] for e in api.events("ONCE10")].count("Coupon.Redeemed") == 1


def test_another_body_or_route_under_the_same_key_is_409(api: Api, sql: Sql) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    user = next(_users)
    k = key()
    assert (
        api.post(
            "/v1/checkout",
            json={"user_id": user, "items": [{"product_id": tote["id"], "quantity": 1}]},
            headers=with_key(k),
        ).status_code
        == 201
    )
    other_body = api.post(
        "/v1/checkout",
        json={"user_id": user, "items": [{"product_id": tote["id"], "quantity": 2}]},
        headers=with_key(k),
    )
    details = assert_error(other_body, 409, "IDEMPOTENCY_KEY_REUSED")
    assert details["idempotency_key"] == k
    other_route = api.post(
        "/v1/checkout/sessions", json={"items": [{"product_id": tote["id"], "quantity": 1}]}, headers=with_key(k)
    )
    details = assert_error(other_route, 409, "IDEMPOTENCY_KEY_REUSED")
    assert (details["method"], details["path"]) == ("POST", "/v1/checkout")
    assert orders_of(sql, user) == 1
    assert api.stock_of(tote["id"]) == 4
    assert sql("SELECT count(*) FROM checkout_sessions WHERE retailer_id = %s", api.retailer_id) == [(0,)]


def test_keys_belong_to_their_retailer(api: Api, other_api: Api) -> None:
    k = key()
    mine = api.add_product("Tote", "10.00", 5)
    theirs = other_api.add_product("Mug", "3.00", 5)
    first = api.post(
        "/v1/checkout", json={"user_id": 1, "items": [{"product_id": mine["id"], "quantity": 1}]}, headers=with_key(k)
    )
    second = other_api.post(
        "/v1/checkout", json={"user_id": 1, "items": [{"product_id": theirs["id"], "quantity": 1}]}, headers=with_key(k)
    )
    assert first.status_code == second.status_code == 201
    assert REPLAYED not in second.headers
    assert first.json()["id"] != second.json()["id"]


def test_an_error_is_not_kept_and_a_retry_runs_again(api: Api, sql: Sql) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    user = next(_users)
    body = {"user_id": user, "items": [{"product_id": tote["id"], "quantity": 1}], "coupon_code": "LATER10"}
    k = key()
    assert_error(api.post("/v1/checkout", json=body, headers=with_key(k)), 404, "COUPON_NOT_FOUND")
    api.create_coupon("LATER10")
    retried = api.post("/v1/checkout", json=body, headers=with_key(k))
    assert retried.status_code == 201, retried.text
    assert REPLAYED not in retried.headers
    assert orders_of(sql, user) == 1
    # After an error, the key is free for another body too.
    k2 = key()
    assert_error(
        api.post(
            "/v1/checkout",
            json={"user_id": user, "items": [{"product_id": tote["id"], "quantity": 99}]},
            headers=with_key(k2),
        ),
        409,
        "OUT_OF_STOCK",
    )
    ok = api.post(
        "/v1/checkout",
        json={"user_id": user, "items": [{"product_id": tote["id"], "quantity": 1}]},
        headers=with_key(k2),
    )
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize("value", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_an_invalid_key_is_a_validation_failure_naming_the_header(api: Api, sql: Sql, value: str) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    user = next(_users)
    response = api.client.post(
        "/v1/checkout",
        json={"user_id": user, "items": [{"product_id": tote["id"], "quantity": 1}]},
        headers=[*api.headers.items(), ("Idempotency-Key", value.encode("utf-8"))],
    )
    assert assert_validation_failed(response) == {"Idempotency-Key"}
    assert orders_of(sql, user) == 0


def claim_row(sql: Sql, retailer_id: Any, k: str, lease_seconds: float, fingerprint: str = "f") -> None:
    sql(
        "INSERT INTO idempotency_keys (retailer_id, key, fingerprint, method, path, claim, lease_until)"
        " VALUES (%s, %s, %s, 'POST', '/v1/checkout', %s, clock_timestamp() + make_interval(secs => %s))"
        " RETURNING key",
        retailer_id,
        k,
        fingerprint,
        uuid4(),
        lease_seconds,
    )


def fingerprint_of(sql: Sql, retailer_id: Any, k: str) -> str:
    return str(
        sql("SELECT fingerprint FROM idempotency_keys WHERE retailer_id = %s AND key = %s", retailer_id, k)[0][0]
    )


def test_a_crashed_requests_claim_is_taken_over_after_its_lease(api: Api, sql: Sql) -> None:
    """A claim left by a request whose process died (lease passed, no response) is taken over by the
    next request with that key, whatever its body; that one runs and its response is kept."""
    tote = api.add_product("Tote", "10.00", 5)
    user = next(_users)
    k = key()
    claim_row(sql, api.retailer_id, k, lease_seconds=-1, fingerprint="another request")
    body = {"user_id": user, "items": [{"product_id": tote["id"], "quantity": 1}]}
    first = api.post("/v1/checkout", json=body, headers=with_key(k))
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    assert_replay(first, api.post("/v1/checkout", json=body, headers=with_key(k)))
    assert orders_of(sql, user) == 1


def test_a_request_in_flight_is_waited_for_then_409_with_retry_after(
    app: FastAPI, api: Api, sql: Sql, monkeypatch: pytest.MonkeyPatch
) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    user = next(_users)
    body = {"user_id": user, "items": [{"product_id": tote["id"], "quantity": 1}]}
    k = key()
    # Learn the request's fingerprint (a first run stores it), then put a live claim in its place.
    assert api.post("/v1/checkout", json=body, headers=with_key(k)).status_code == 201
    fingerprint = fingerprint_of(sql, api.retailer_id, k)
    k2 = key()
    claim_row(sql, api.retailer_id, k2, lease_seconds=60, fingerprint=fingerprint)
    monkeypatch.setattr(app.state.services.idempotency, "wait_seconds", 0.3)
    busy = api.post("/v1/checkout", json=body, headers=with_key(k2))
    details = assert_error(busy, 409, "IDEMPOTENCY_KEY_IN_USE")
    assert details["idempotency_key"] == k2
    assert busy.headers["Retry-After"] == "1"
    # The same key with another body is refused at once, in flight or not.
    other = api.post("/v1/checkout", json={**body, "user_id": user + 1}, headers=with_key(k2))
    assert_error(other, 409, "IDEMPOTENCY_KEY_REUSED")
    assert orders_of(sql, user) == 1


def test_a_retry_waits_for_the_first_request_and_replays_its_response(
    app: FastAPI, api: Api, sql: Sql, monkeypatch: pytest.MonkeyPatch
) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    user = next(_users)
    body = {"user_id": user, "items": [{"product_id": tote["id"], "quantity": 1}]}
    k = key()
    assert api.post("/v1/checkout", json=body, headers=with_key(k)).status_code == 201
    fingerprint = fingerprint_of(sql, api.retailer_id, k)
    k2 = key()
    claim_row(sql, api.retailer_id, k2, lease_seconds=60, fingerprint=fingerprint)
    monkeypatch.setattr(app.state.services.idempotency, "wait_seconds", 30)
    stored = b'{"id":1,"note":"the first request\'s response"}'

    def first_request_finishes() -> None:
        time.sleep(0.5)
        sql(
            "UPDATE idempotency_keys SET response_status = 201, response_body = %s, claim = NULL, lease_until = NULL"
            " WHERE retailer_id = %s AND key = %s RETURNING key",
            stored,
            api.retailer_id,
            k2,
        )

    finisher = threading.Thread(target=first_request_finishes)
    finisher.start()
    waited = api.post("/v1/checkout", json=body, headers=with_key(k2))
    finisher.join()
    assert waited.status_code == 201
    assert waited.content == stored
    assert waited.headers[REPLAYED] == "true"
    assert orders_of(sql, user) == 1  # the waiting request placed nothing itself


def test_keys_are_kept_with_the_response(api: Api, sql: Sql) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    k = key()
    first = api.post(
        "/v1/checkout", json={"user_id": 1, "items": [{"product_id": tote["id"], "quantity": 1}]}, headers=with_key(k)
    )
    rows = sql(
        "SELECT method, path, response_status, response_body, claim FROM idempotency_keys"
        " WHERE retailer_id = %s AND key = %s",
        api.retailer_id,
        k,
    )
    assert rows == [("POST", "/v1/checkout", 201, first.content, None)]


def test_without_a_key_every_call_runs(api: Api, sql: Sql) -> None:
    tote = api.add_product("Tote", "10.00", 5)
    user = next(_users)
    body = {"user_id": user, "items": [{"product_id": tote["id"], "quantity": 1}]}
    assert api.post("/v1/checkout", json=body).status_code == 201
    assert api.post("/v1/checkout", json=body).status_code == 201
    assert orders_of(sql, user) == 2
    assert sql("SELECT count(*) FROM idempotency_keys WHERE retailer_id = %s", api.retailer_id) == [(0,)]


def test_the_openapi_document_names_the_header_and_the_replay(client: Any) -> None:
    document = client.get("/openapi.json").json()
    operations = [
        ("/v1/checkout", "post"),
        ("/v1/checkout/sessions", "post"),
        ("/v1/checkout/sessions/{session_id}/coupon", "post"),
        ("/v1/checkout/sessions/{session_id}/coupon", "delete"),
        ("/v1/checkout/sessions/{session_id}/hold-inventory", "post"),
        ("/v1/reservations/{reservation_id}/confirm", "post"),
        ("/v1/reservations/{reservation_id}/release", "post"),
    ]
    for path, method in operations:
        operation = document["paths"][path][method]
        headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
        # The session routes also name the session's client secret.
        assert set(headers) == {"Idempotency-Key"} | ({"X-Client-Secret"} if "/sessions" in path else set())
        header = headers["Idempotency-Key"]
        assert header["schema"]["maxLength"] == 255
        conflict = operation["responses"]["409"]
        assert {"IDEMPOTENCY_KEY_REUSED", "IDEMPOTENCY_KEY_IN_USE"} <= set(conflict["x-error-codes"])
        assert "Retry-After" in conflict["headers"]
        success = next(r for status, r in operation["responses"].items() if status.startswith("2"))
        assert "Idempotent-Replayed" in success["headers"]


def reserve(api: Api, code: str) -> str:
    response = api.post("/v1/coupons/reserve", json={"code": code, "subtotal": "50.00"})
    assert response.status_code == 201, response.text
    return str(response.json()["reservation_id"])


def test_confirm_and_release_replay_under_their_key(api: Api) -> None:
    api.create_coupon("HELD10", max_uses=5)
    confirmed_id, released_id = reserve(api, "HELD10"), reserve(api, "HELD10")
    k = key()
    confirm = f"/v1/reservations/{confirmed_id}/confirm"
    first = api.post(confirm, json={"order_id": "A-1"}, headers=with_key(k))
    assert first.status_code == 201, first.text
    assert_replay(first, api.post(confirm, json={"order_id": "A-1"}, headers=with_key(k)))
    assert_error(api.post(confirm, json={"order_id": "A-2"}, headers=with_key(k)), 409, "IDEMPOTENCY_KEY_REUSED")
    release = f"/v1/reservations/{released_id}/release"
    assert_error(api.post(release, headers=with_key(k)), 409, "IDEMPOTENCY_KEY_REUSED")
    k2 = key()
    ended = api.post(release, headers=with_key(k2))
    assert ended.status_code == 200, ended.text
    assert ended.json()["already_ended"] is False
    assert_replay(ended, api.post(release, headers=with_key(k2)))  # the first answer, not "already ended"
    assert api.post(release).json()["already_ended"] is True
    assert api.coupon("HELD10")["uses_count"] == 1
