"""Cross-cutting HTTP behaviour: authentication, request ids, the error shape for unknown
routes, wrong methods, oversized bodies and unexpected failures, and the operations pages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.http import Api, assert_error, assert_validation_failed

PROTECTED = [
    ("GET", "/v1/coupons", None),
    ("POST", "/v1/coupons", {"code": "AUTH1", "discount_type": "fixed", "discount_value": "5"}),
    ("GET", "/v1/coupons/AUTH1", None),
    ("POST", "/v1/coupons/AUTH1/deactivate", None),
    ("POST", "/v1/coupons/AUTH1/activate", None),
    ("GET", "/v1/coupons/AUTH1/events", None),
    ("POST", "/v1/coupons/validate", {"code": "AUTH1", "subtotal": "10"}),
    ("POST", "/v1/coupons/apply", {"code": "AUTH1", "subtotal": "10"}),
    ("GET", "/v1/products", None),
    ("POST", "/v1/products", {"name": "mug", "price": "5", "stock": 1}),
    ("POST", "/v1/checkout", {"user_id": 1, "items": [{"product_id": 1, "quantity": 1}]}),
]
BAD_AUTHORIZATION = {
    "missing header": None,
    "wrong scheme": "Basic dXNlcjpwYXNz",
    "unknown key": "Bearer cl_this-key-was-never-issued",
    "empty bearer": "Bearer ",
    "key without scheme": "cl_no_scheme_at_all",
}


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION.values(), ids=BAD_AUTHORIZATION.keys())
@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED])
def test_every_v1_endpoint_rejects_a_request_without_a_valid_bearer_key(
    client: TestClient, method: str, path: str, body: Any, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client.request(method, path, json=body, headers=headers)
    assert_error(response, 401, "UNAUTHENTICATED")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_an_unauthenticated_write_changes_nothing(api: Api) -> None:
    body = {"code": "NOAUTH1", "discount_type": "fixed", "discount_value": "5"}
    response = api.client.post("/v1/coupons", json=body, headers={"Authorization": "Bearer wrong"})
    assert_error(response, 401, "UNAUTHENTICATED")
    assert_error(api.get("/v1/coupons/NOAUTH1"), 404, "COUPON_NOT_FOUND")


def test_the_bearer_scheme_name_is_case_insensitive(api: Api) -> None:
    response = api.client.get("/v1/coupons", headers={"Authorization": f"bearer {api.api_key}"})
    assert response.status_code == 200, response.text


def test_every_response_carries_a_request_id_and_each_request_gets_its_own(api: Api) -> None:
    first = api.get("/v1/coupons")
    second = api.get("/v1/coupons")
    assert first.status_code == second.status_code == 200
    assert first.headers["X-Request-ID"]
    assert second.headers["X-Request-ID"]
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


def test_a_client_sent_request_id_is_echoed_on_success(api: Api) -> None:
    response = api.get("/v1/coupons", headers={"X-Request-ID": "client-req-42"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "client-req-42"


def test_a_client_sent_request_id_is_echoed_in_the_error_body_and_header(api: Api) -> None:
    response = api.get("/v1/coupons/NOSUCH1", headers={"X-Request-ID": "client-req-43"})
    assert_error(response, 404, "COUPON_NOT_FOUND")
    assert response.headers["X-Request-ID"] == "client-req-43"
    assert response.json()["error"]["request_id"] == "client-req-43"


@pytest.mark.parametrize("path", ["/v1/nothing-here", "/v2/coupons", "/v1/coupons/SAVE10/nonsense"])
def test_an_unknown_route_is_not_found_in_the_error_shape(api: Api, path: str) -> None:
    details = assert_error(api.get(path), 404, "NOT_FOUND")
    assert details == {}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/coupons"),
        ("GET", "/v1/checkout"),
        ("DELETE", "/v1/products"),
        ("GET", "/v1/coupons/SAVE10/activate"),
        ("PUT", "/v1/coupons/SAVE10/deactivate"),
    ],
)
def test_a_wrong_method_is_method_not_allowed_in_the_error_shape(api: Api, method: str, path: str) -> None:
    response = api.client.request(method, path, headers=api.headers)
    assert_error(response, 405, "METHOD_NOT_ALLOWED")


def test_a_wrong_method_response_names_the_allowed_methods(api: Api) -> None:
    # RFC 9110 section 15.5.6: a 405 response MUST carry an Allow header.
    response = api.client.put("/v1/checkout", headers=api.headers)
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response.headers.get("Allow", "")


def _padded_coupon(code: str, size: int) -> bytes:
    """A valid coupon body padded with JSON whitespace to exactly ``size`` bytes."""
    body = json.dumps({"code": code, "discount_type": "fixed", "discount_value": "5"}).encode()
    return body + b" " * (size - len(body))


def test_a_body_over_64_kib_is_rejected_before_it_is_processed(api: Api) -> None:
    body = _padded_coupon("BIGBODY1", 64 * 1024 + 1)
    response = api.post("/v1/coupons", content=body, headers={"Content-Type": "application/json"})
    details = assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert details == {"max_bytes": 65536}
    assert_error(api.get("/v1/coupons/BIGBODY1"), 404, "COUPON_NOT_FOUND")


def test_a_body_of_exactly_64_kib_is_accepted(api: Api) -> None:
    body = _padded_coupon("BIGBODY2", 64 * 1024)
    response = api.post("/v1/coupons", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text


def test_a_chunked_body_over_64_kib_is_rejected_too(api: Api) -> None:
    body = _padded_coupon("BIGBODY3", 70 * 1024)

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent with Transfer-Encoding: chunked
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = api.post("/v1/coupons", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert_error(api.get("/v1/coupons/BIGBODY3"), 404, "COUPON_NOT_FOUND")


def test_malformed_json_is_a_validation_failure(api: Api) -> None:
    response = api.post("/v1/coupons", content=b'{"code": ', headers={"Content-Type": "application/json"})
    assert_validation_failed(response)


@pytest.fixture
def failing_client(app: FastAPI, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """A client whose coupon lookups blow up with an unexpected exception."""

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret-internal-detail: connection string postgres://u:p@db")

    monkeypatch.setattr(app.state.services.ledger, "get_coupon", explode)
    return TestClient(app, raise_server_exceptions=False)  # services were started by `client`


def test_an_unexpected_failure_is_an_internal_error_without_a_stack_trace(api: Api, failing_client: TestClient) -> None:
    response = failing_client.get("/v1/coupons/ANY1", headers=api.headers)
    details = assert_error(response, 500, "INTERNAL_ERROR", header_matches=False)
    assert details == {}
    text = response.text
    for leak in ("Traceback", "RuntimeError", "secret-internal-detail", "postgres://", 'File "'):
        assert leak not in text


def test_an_internal_error_echoes_the_client_request_id_in_its_body(api: Api, failing_client: TestClient) -> None:
    response = failing_client.get("/v1/coupons/ANY1", headers={**api.headers, "X-Request-ID": "client-req-500"})
    assert_error(response, 500, "INTERNAL_ERROR", header_matches=False)
    assert response.json()["error"]["request_id"] == "client-req-500"


def test_an_internal_error_carries_the_same_request_id_header_as_its_body(api: Api, failing_client: TestClient) -> None:
    response = failing_client.get("/v1/coupons/ANY1", headers={**api.headers, "X-Request-ID": "client-req-501"})
    assert_error(response, 500, "INTERNAL_ERROR")
    assert response.headers.get("X-Request-ID") == "client-req-501"


def test_healthz_is_ok_without_authentication(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_docs_serve_the_interactive_html_page(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "swagger" in response.text.lower()
    assert "/openapi.json" in response.text


def test_openapi_lists_every_endpoint_of_the_contract(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    expected = {
        "/v1/coupons": {"get", "post"},
        "/v1/coupons/{code}": {"get"},
        "/v1/coupons/{code}/deactivate": {"post"},
        "/v1/coupons/{code}/activate": {"post"},
        "/v1/coupons/{code}/events": {"get"},
        "/v1/coupons/validate": {"post"},
        "/v1/coupons/apply": {"post"},
        "/v1/products": {"get", "post"},
        "/v1/checkout": {"post"},
        "/healthz": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))


# The redemption route is served by RequestContext itself (api/app.py), not through the router:
# the same guarantees hold there.


def test_the_apply_route_echoes_the_request_id_and_refuses_an_oversized_chunked_body(api: Api) -> None:
    api.create_coupon("DIRECT1", discount_type="fixed", discount_value="5")
    body = json.dumps({"code": "DIRECT1", "subtotal": "10.00"}).encode()
    body += b" " * (70 * 1024)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = api.post("/v1/coupons/apply", content=chunks(), headers={"X-Request-ID": "client-req-44"})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert response.headers["X-Request-ID"] == "client-req-44"
    assert api.get("/v1/coupons/DIRECT1").json()["uses_count"] == 0

    response = api.post("/v1/coupons/apply", json={"code": "DIRECT1", "subtotal": "10.00"})
    assert response.status_code == 201, response.text
    assert response.headers["X-Request-ID"]


def test_an_unexpected_failure_on_the_apply_route_is_an_internal_error(
    api: Api, app: FastAPI, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret-internal-detail")

    monkeypatch.setattr(app.state.services.ledger, "execute_async", explode)
    quiet = TestClient(app, raise_server_exceptions=False)
    response = quiet.post(
        "/v1/coupons/apply",
        json={"code": "ANY1", "subtotal": "10.00"},
        headers={**api.headers, "X-Request-ID": "client-req-502"},
    )
    assert_error(response, 500, "INTERNAL_ERROR")
    assert response.json()["error"]["request_id"] == "client-req-502"
    assert "secret-internal-detail" not in response.text
