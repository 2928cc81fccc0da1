"""The HTTP edges: a client gone mid-body, OPTIONS and 405, strict booleans, empty cursors, and
what the documentation shows for errors and for the variants of a body."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Message

from tests.support.http import Api, assert_error


def errors_of(response: Any) -> dict[str, str]:
    details = assert_error(response, 422, "VALIDATION_FAILED")
    return {e["field"]: e["message"] for e in details["errors"]}


COUPON = {"code": "STRICT1", "discount_type": "percentage", "discount_value": "10"}


# --------------------------------------------------------------------------- a client gone mid-body


def send_half_a_body(app: FastAPI, path: str, api_key: str) -> list[Message]:
    """POST ``path`` declaring a 100-byte body, send 10 bytes and disconnect; what the app sent."""
    chunks: list[Message] = [
        {"type": "http.request", "body": b'{"code": "', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {api_key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"100"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    return sent


@pytest.mark.parametrize("path", ["/v1/coupons/apply", "/v1/coupons/validate", "/v1/coupons"])
def test_a_client_that_disconnects_mid_body_leaves_no_traceback_in_the_log(
    app: FastAPI, api: Api, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        sent = send_half_a_body(app, path, api.api_key)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert all(m["status"] < 500 for m in starts), starts


# --------------------------------------------------------------------------- OPTIONS and 405


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/v1/coupons/apply", "POST"),
        ("OPTIONS", "/v1/coupons/validate", "POST"),
        ("OPTIONS", "/v1/coupons", "GET, POST"),
        ("OPTIONS", "/v1/coupons/SAVE10", "DELETE, GET, PATCH"),
        ("PUT", "/v1/coupons/reserve", "POST"),
    ],
)
def test_options_and_other_unserved_methods_answer_405_allowing_the_routes_documented_methods(
    api: Api, client: TestClient, method: str, path: str, allowed: str
) -> None:
    response = api.request(method, path)
    details = assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == allowed
    assert details["allowed"] == allowed.split(", ")
    documented = client.get("/openapi.json").json()["paths"]
    template = path if path in documented else "/v1/coupons/{code}"
    assert sorted(m.upper() for m in documented[template]) == allowed.split(", ")


def test_a_coupon_whose_code_is_a_route_name_is_still_read_through_its_code(api: Api) -> None:
    assert api.post("/v1/coupons", json={**COUPON, "code": "APPLY"}).status_code == 201
    assert api.get("/v1/coupons/apply").json()["code"] == "APPLY"


# --------------------------------------------------------------------------- strict booleans


NOT_BOOLEANS = [0, 1, "yes", "true"]


@pytest.mark.parametrize("value", NOT_BOOLEANS)
@pytest.mark.parametrize("field", ["is_active", "public"])
def test_a_coupon_takes_only_json_booleans(api: Api, field: str, value: Any) -> None:
    response = api.post("/v1/coupons", json={**COUPON, field: value})
    assert_error(response, 422, "VALIDATION_FAILED")
    assert field in errors_of(response)


@pytest.mark.parametrize("value", NOT_BOOLEANS)
@pytest.mark.parametrize("field", ["is_active", "public"])
def test_a_campaign_template_takes_only_json_booleans(api: Api, field: str, value: Any) -> None:
    template = {"discount_type": "fixed", "discount_value": "5", field: value}
    response = api.post("/v1/campaigns", json={"name": "Strict", "prefix": "ST-", "count": 1, "coupon": template})
    assert_error(response, 422, "VALIDATION_FAILED")
    assert f"coupon.{field}" in errors_of(response)


@pytest.mark.parametrize("value", NOT_BOOLEANS)
def test_a_patch_takes_only_json_booleans(api: Api, value: Any) -> None:
    assert api.post("/v1/coupons", json=COUPON).status_code == 201
    response = api.request("PATCH", "/v1/coupons/STRICT1", json={"public": value})
    assert_error(response, 422, "VALIDATION_FAILED")
    assert "public" in errors_of(response)
    assert api.request("PATCH", "/v1/coupons/STRICT1", json={"public": True}).json()["public"] is True


# --------------------------------------------------------------------------- empty cursors


@pytest.fixture
def campaign_id(api: Api) -> str:
    template = {"discount_type": "fixed", "discount_value": "5"}
    response = api.post("/v1/campaigns", json={"name": "Paged", "prefix": "PG-", "count": 1, "coupon": template})
    assert response.status_code == 201, response.text
    campaign: str = response.json()["id"]
    return campaign


def paged_paths(api: Api, campaign_id: str) -> Iterator[tuple[Api, str]]:
    assert api.post("/v1/coupons", json=COUPON).status_code == 201
    yield api, "/v1/coupons"
    yield api, "/v1/coupons/STRICT1/events"
    yield api, f"/v1/campaigns/{campaign_id}/coupons"
    yield api, "/v1/campaigns"
    yield api.publishable, "/v1/storefront/coupons"
    yield api, "/v1/redemptions"
    yield api, "/v1/webhooks/endpoints"
    yield api, "/v1/webhooks/deliveries"


def test_an_empty_cursor_is_refused_naming_cursor_on_every_paged_route(api: Api, campaign_id: str) -> None:
    for caller, path in paged_paths(api, campaign_id):
        response = caller.get(path, params={"cursor": ""})
        assert_error(response, 422, "VALIDATION_FAILED")
        assert "cursor" in errors_of(response), path
        assert caller.get(path).status_code == 200, path


def test_every_paged_route_of_the_document_takes_a_cursor(client: TestClient) -> None:
    documented = client.get("/openapi.json").json()["paths"]
    paged = {
        path
        for path, operations in documented.items()
        for operation in operations.values()
        if any(p["name"] == "cursor" for p in operation.get("parameters", []))
    }
    assert paged == {
        "/v1/coupons",
        "/v1/coupons/{code}/events",
        "/v1/campaigns/{campaign_id}/coupons",
        "/v1/campaigns",
        "/v1/storefront/coupons",
        "/v1/redemptions",
        "/v1/webhooks/endpoints",
        "/v1/webhooks/deliveries",
    }  # the routes test_an_empty_cursor_is_refused_naming_cursor_on_every_paged_route calls


# --------------------------------------------------------------------------- the documentation


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def test_the_examples_of_each_error_status_are_the_codes_listed_for_it(document: dict[str, Any]) -> None:
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                examples = response["content"]["application/json"].get("examples", {})
                shown = [example["value"]["error"]["code"] for example in examples.values()]
                assert shown == response["x-error-codes"], (method, path, status)
                checked += 1
    assert checked > 100


def unnamed_variants(node: Any, where: str = "") -> Iterator[str]:
    """Where a oneOf or anyOf has a variant that documentation could only name after its parent:
    no reference, type, title or variants of its own; or two variants share a title."""
    if isinstance(node, dict):
        for key in ("oneOf", "anyOf"):
            variants = node.get(key, [])
            titles = [v["title"] for v in variants if "title" in v]
            if len(titles) != len(set(titles)):
                yield f"{where}/{key}: {titles}"
            for variant in variants:
                if not {"$ref", "type", "title", "const", "enum", "anyOf", "oneOf"} & set(variant):
                    yield f"{where}/{key}: {variant}"
        for key, value in node.items():
            yield from unnamed_variants(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from unnamed_variants(value, f"{where}/{index}")


def test_every_variant_of_a_documented_body_has_a_name_of_its_own(document: dict[str, Any]) -> None:
    assert list(unnamed_variants(document["components"]["schemas"])) == []
    coupon_create = document["components"]["schemas"]["CouponCreate"]
    assert [v["title"] for v in coupon_create["oneOf"]] == [
        "Percentage coupon",
        "Fixed-amount coupon",
        "Free-shipping coupon",
    ]
