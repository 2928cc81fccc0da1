"""Every input answered in the contract: each case a schemathesis run or a person
found, as a regression test. Every bad value is a 422 VALIDATION_FAILED naming its field, before
anything is written; no input is a 500; timestamps are UTC with Z everywhere; the OpenAPI
document tells the truth; /docs and /redoc load nothing from another host."""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.support.http import Api, Sql, assert_error, assert_validation_failed


def errors_of(response: Any) -> dict[str, str]:
    assert_validation_failed(response)
    return {e["field"]: e["message"] for e in response.json()["error"]["details"]["errors"]}


def event_count(sql: Sql) -> int:
    return int(sql("SELECT count(*) FROM ledger_events")[0][0])


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    "expires_at",
    [
        "9999-12-31T23:59:59-01:00",  # the reported one: year 10000 in UTC
        "9999-12-31T23:59:59Z",  # beyond what PostgreSQL gives back in any session time zone
        "0001-01-01T00:00:00+01:00",  # year 0 in UTC
        "0001-01-01T00:00:00Z",
    ],
)
def test_an_expiry_postgresql_cannot_give_back_is_refused_and_the_list_keeps_working(
    api: Api, sql: Sql, expires_at: str
) -> None:
    before = event_count(sql)
    errors = errors_of(api.post("/v1/coupons", json={**COUPON, "expires_at": expires_at}))
    assert set(errors) == {"expires_at"}
    assert "between 0001-01-02T00:00:00Z and 9999-12-30T23:59:59.999999Z" in errors["expires_at"]
    assert event_count(sql) == before
    assert api.list_codes() == []


def test_the_latest_storable_expiry_is_accepted_and_listed(api: Api) -> None:
    created = api.create_coupon("FAR1", expires_at="9999-12-30T23:59:59Z")
    assert created["expires_at"] == "9999-12-30T23:59:59Z"
    assert api.list_codes() == ["FAR1"]


def test_an_expiry_with_an_offset_is_normalised_to_utc_with_z_everywhere(api: Api) -> None:
    created = api.create_coupon("ZONED1", expires_at="2030-01-01T02:00:00+02:00")
    assert created["expires_at"] == "2030-01-01T00:00:00Z"
    assert created["created_at"].endswith("Z")
    assert api.coupon("ZONED1")["expires_at"] == "2030-01-01T00:00:00Z"
    (listed,) = api.get("/v1/coupons").json()["data"]
    assert listed["expires_at"] == "2030-01-01T00:00:00Z"
    (event,) = api.events("ZONED1")
    assert event["data"]["expires_at"] == "2030-01-01T00:00:00Z"
    assert event["occurred_at"].endswith("Z")


def test_an_expired_coupon_names_its_expiry_in_utc_with_z(api: Api) -> None:
    api.create_coupon("WASZONED1", expires_at="2000-01-01T01:00:00+02:00")
    details = assert_error(api.apply("WASZONED1", "10.00"), 422, "COUPON_EXPIRED")
    assert details["expired_at"] == "1999-12-31T23:00:00Z"
    assert "1999-12-31T23:00:00Z" in api.apply("WASZONED1", "10.00").json()["error"]["message"]


# --------------------------------------------------------------------------- cursors


@pytest.mark.parametrize(
    "cursor",
    [
        "AAAA",  # decodes to NUL bytes: the reported 500
        "AA",
        "!!!!",
        "%00",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),  # not UTF-8
        base64.urlsafe_b64encode(b"ab").decode(),  # too short to be a code
        base64.urlsafe_b64encode("straße".encode()).decode(),
        "x" * 201,
    ],
)
def test_a_cursor_that_is_not_one_the_list_returned_is_a_validation_failure(api: Api, cursor: str) -> None:
    assert set(errors_of(api.get("/v1/coupons", params={"cursor": cursor}))) == {"cursor"}


@pytest.mark.parametrize(
    "cursor",
    ["AAAA", base64.urlsafe_b64encode(b"12a").decode(), base64.urlsafe_b64encode(b"9" * 30).decode()],
)
def test_an_events_cursor_that_is_not_a_version_is_a_validation_failure(api: Api, cursor: str) -> None:
    api.create_coupon("CURSED1")
    assert set(errors_of(api.get("/v1/coupons/CURSED1/events", params={"cursor": cursor}))) == {"cursor"}


# --------------------------------------------------------------------------- text, integers, amounts


def test_a_product_name_with_a_nul_is_refused_and_nothing_is_written(api: Api, sql: Sql) -> None:
    before = sql("SELECT count(*) FROM products")[0][0]
    errors = errors_of(api.post("/v1/products", json={"name": "mug\x00", "price": "5.00", "stock": 1}))
    assert errors == {"name": "must not contain a NUL character"}
    assert sql("SELECT count(*) FROM products")[0][0] == before


def test_a_product_name_with_a_lone_surrogate_is_refused(api: Api) -> None:
    body = b'{"name": "mug\\ud800", "price": "5.00", "stock": 1}'
    response = api.post("/v1/products", content=body, headers={"Content-Type": "application/json"})
    assert set(errors_of(response)) == {"name"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": 99999999999999999999, "items": [{"product_id": 1, "quantity": 1}]}, "user_id"),
        ({"user_id": 1, "items": [{"product_id": 99999999999999999999, "quantity": 1}]}, "items.0.product_id"),
        ({"user_id": True, "items": [{"product_id": 1, "quantity": 1}]}, "user_id"),
        ({"user_id": 1, "items": [{"product_id": 1, "quantity": 1}], "coupon_code": "SAVE\x0010"}, "coupon_code"),
    ],
)
def test_a_checkout_value_out_of_its_column_is_a_validation_failure(
    api: Api, sql: Sql, body: dict[str, Any], field: str
) -> None:
    before = sql("SELECT count(*) FROM orders")[0][0]
    assert field in errors_of(api.post("/v1/checkout", json=body))
    assert sql("SELECT count(*) FROM orders")[0][0] == before


def test_a_stock_or_max_uses_beyond_an_integer_column_is_a_validation_failure(api: Api) -> None:
    assert set(errors_of(api.post("/v1/products", json={"name": "m", "price": 1, "stock": 2**31}))) == {"stock"}
    assert set(errors_of(api.post("/v1/coupons", json={**COUPON, "max_uses": 2**31}))) == {"max_uses"}


def test_an_order_id_with_a_nul_is_refused_and_never_reaches_the_ledger(api: Api, sql: Sql) -> None:
    api.create_coupon("NULORDER1")
    before = event_count(sql)
    response = api.apply("NULORDER1", "10.00", order_id="10\x0001")
    assert errors_of(response) == {"order_id": "must not contain a NUL character"}
    assert event_count(sql) == before
    assert api.coupon("NULORDER1")["uses_count"] == 0


@pytest.mark.parametrize("key", ["caf\xe9", "tab\there", "x" * 256])
def test_an_idempotency_key_that_is_not_printable_ascii_of_1_to_255_is_refused(api: Api, sql: Sql, key: str) -> None:
    api.create_coupon("KEYED1")
    response = api.post(
        "/v1/coupons/apply",
        json={"code": "KEYED1", "subtotal": "10.00"},
        headers={"Idempotency-Key": key.encode("latin-1")},  # type: ignore[dict-item]
    )
    assert set(errors_of(response)) == {"Idempotency-Key"}
    assert api.coupon("KEYED1")["uses_count"] == 0


def test_an_order_whose_subtotal_exceeds_the_orders_column_is_refused_before_anything_is_written(
    api: Api, sql: Sql
) -> None:
    product = api.add_product("Yacht", "999999999999.99", 5)
    response = api.post("/v1/checkout", json={"user_id": 7007, "items": [{"product_id": product["id"], "quantity": 2}]})
    errors = errors_of(response)
    assert set(errors) == {"items"}
    assert "999999999999.99" in errors["items"]
    assert api.stock_of(product["id"]) == 5
    assert sql("SELECT count(*) FROM orders WHERE user_id = 7007")[0][0] == 0
    # One of them fits the column.
    response = api.post("/v1/checkout", json={"user_id": 7007, "items": [{"product_id": product["id"], "quantity": 1}]})
    assert response.status_code == 201, response.text
    assert response.json()["subtotal"] == "999999999999.99"


# --------------------------------------------------------------------------- codes


def test_a_code_with_a_non_ascii_letter_is_refused_never_transliterated(api: Api) -> None:
    assert set(errors_of(api.post("/v1/coupons", json={**COUPON, "code": "straße"}))) == {"code"}
    api.create_coupon("STRASSE")
    assert_error(api.get("/v1/coupons/straße"), 404, "COUPON_NOT_FOUND")
    assert_error(api.apply("straße", "10.00"), 404, "COUPON_NOT_FOUND")
    assert_error(api.post("/v1/coupons/validate", json={"code": "straße", "subtotal": "1"}), 404, "COUPON_NOT_FOUND")
    assert api.coupon("STRASSE")["uses_count"] == 0


def test_a_code_is_trimmed_of_ascii_spaces_and_upper_cased(api: Api) -> None:
    assert api.create_coupon(" \tsave_1-x\n")["code"] == "SAVE_1-X"


# --------------------------------------------------------------------------- error messages


def test_malformed_json_names_the_body_not_a_character_position(api: Api) -> None:
    for path in ("/v1/coupons", "/v1/coupons/apply", "/v1/products"):
        response = api.post(path, content=b'{"code": "SAVE10",', headers={"Content-Type": "application/json"})
        errors = errors_of(response)
        assert set(errors) == {"body"}, path
        assert errors["body"].startswith("is not valid JSON"), errors


def test_validation_messages_are_plain_words_without_pydantic_prefixes(api: Api) -> None:
    responses = [
        api.post("/v1/coupons", json={**COUPON, "discount_value": "1.005"}),
        api.post("/v1/coupons", json={**COUPON, "code": "A"}),
        api.apply("ANY1", "-1"),
    ]
    for response in responses:
        for message in errors_of(response).values():
            assert not message.startswith(("Value error", "Assertion failed")), message


# --------------------------------------------------------------------------- 405


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/coupons/apply", "POST"),  # its own route's, not those of /v1/coupons/{code}
        ("DELETE", "/v1/coupons", "GET, POST"),
        ("PATCH", "/v1/products", "GET, POST"),
        ("GET", "/v1/checkout", "POST"),
        ("PUT", "/v1/coupons/validate", "POST"),
        ("PUT", "/v1/coupons/SAVE10", "DELETE, GET, PATCH"),
    ],
)
def test_a_405_allow_header_lists_the_methods_documented_for_the_path(
    api: Api, method: str, path: str, allowed: str
) -> None:
    response = api.client.request(method, path, headers=api.headers)
    details = assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == allowed
    assert details["allowed"] == allowed.split(", ")


# --------------------------------------------------------------------------- OpenAPI


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in document["paths"].items() for method, op in ops.items()]


def test_openapi_has_the_error_shape_and_no_fastapi_default_validation_error(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    error = schemas["Error"]
    assert error["required"] == ["error"]
    body = schemas[error["properties"]["error"]["$ref"].rsplit("/", 1)[1]]
    assert set(body["required"]) == {"code", "message", "details", "request_id"}


def test_every_error_response_references_the_error_component_and_names_its_codes(document: dict[str, Any]) -> None:
    for path, method, op in operations(document):
        for status, response in op["responses"].items():
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
                assert response["x-error-codes"], (path, method, status)
                for code in response["x-error-codes"]:
                    assert code in response["description"], (path, method, status)


def test_every_v1_operation_needs_the_bearer_key_and_documents_401(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert {k: v for k, v in scheme.items() if k != "description"} == {"type": "http", "scheme": "bearer"}
    assert "Authorization: Bearer <key>" in scheme["description"] and "publishable key" in scheme["description"]
    for path, method, op in operations(document):
        if path.startswith("/v1/"):
            assert op["security"] == [{"bearerAuth": []}], (path, method)
            assert op["responses"]["401"]["x-error-codes"] == ["UNAUTHENTICATED"]
        else:
            assert "security" not in op and "401" not in op["responses"], (path, method)
        if "requestBody" in op:
            assert "413" in op["responses"] and "422" in op["responses"], (path, method)
        # 429 exactly where a code is looked up: too many COUPON_NOT_FOUND (api/throttle.py); and where
        # a session holds stock, past the cap of a publishable-key shopper's holds (api/shop/shoppers.py);
        # and a campaign past the retailer's codes for the day (api/campaign_quota.py).
        not_found = "COUPON_NOT_FOUND" in op["responses"].get("404", {}).get("x-error-codes", [])
        holds_stock = (path, method) == ("/v1/checkout/sessions/{session_id}/hold-inventory", "post")
        over_quota = (path, method) == ("/v1/campaigns", "post")
        if (not_found and takes_a_code(document, path, op)) or holds_stock or over_quota:
            assert op["responses"]["429"]["x-error-codes"] == ["RATE_LIMITED"], (path, method)
            assert "Retry-After" in op["responses"]["429"]["headers"], (path, method)
        else:
            assert "429" not in op["responses"], (path, method)


def takes_a_code(document: dict[str, Any], path: str, op: dict[str, Any]) -> bool:
    """Whether the operation takes a coupon's code: a {code} path parameter, or a code or
    coupon_code in its JSON body."""
    if "{code}" in path:
        return True
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in body:
        body = document["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    return bool({"code", "coupon_code"} & set(body.get("properties", {})))


def test_the_documented_checkout_response_has_coupon_fields_only_optionally(document: dict[str, Any]) -> None:
    content = document["paths"]["/v1/checkout"]["post"]["responses"]["201"]["content"]["application/json"]
    schema = document["components"]["schemas"][content["schema"]["$ref"].rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"id", "user_id", "subtotal", "total", "created_at"}
    assert {"discount_amount", "coupon_code", "redemption_id"} <= set(schema["properties"])


def test_money_codes_and_timestamps_are_documented_with_the_bounds_the_server_enforces(
    document: dict[str, Any],
) -> None:
    create = document["components"]["schemas"]["CouponCreate"]
    min_order = create["properties"]["min_order_value"]["anyOf"][0]
    assert min_order["anyOf"][0] == {"type": "string", "pattern": "^\\d{1,12}(\\.\\d{1,2})?$"}
    assert min_order["anyOf"][1]["maximum"] == 999999999999.99
    assert min_order["anyOf"][1]["multipleOf"] == 0.01
    assert create["properties"]["code"]["pattern"].endswith("[A-Za-z0-9_-]{3,50}[\\t\\n\\v\\f\\r ]*$")
    assert create["properties"]["expires_at"]["anyOf"][0]["format"] == "date-time"
    discount_types = {v["properties"]["discount_type"]["const"] for v in create["oneOf"]}
    assert discount_types == {"percentage", "fixed", "free_shipping"}
    product = document["components"]["schemas"]["ProductCreate"]["properties"]
    assert product["name"]["pattern"] == "^[^\\u0000]*$" and product["name"]["maxLength"] == 200
    assert product["stock"]["maximum"] == 2**31 - 1


def test_operations_are_linked_for_stateful_testing(document: dict[str, Any]) -> None:
    created = document["paths"]["/v1/coupons"]["post"]["responses"]["201"]["links"]
    assert {link["operationId"] for link in created.values()} == {
        "get_coupon",
        "deactivate_coupon",
        "activate_coupon",
        "update_coupon",
        "transition_coupon",
        "archive_coupon",
        "coupon_events",
        "validate_coupon",
        "apply_coupon",
    }
    for link in created.values():
        code = link["parameters"]["code"] if "parameters" in link else link["requestBody"]["code"]
        assert code == "$response.body#/code"
    product = document["paths"]["/v1/products"]["post"]["responses"]["201"]["links"]
    assert product["CheckoutProduct"]["operationId"] == "checkout"
    operation_ids = {op["operationId"] for _, _, op in operations(document)}
    assert {link["operationId"] for link in [*created.values(), *product.values()]} <= operation_ids


def test_request_bodies_carry_examples(document: dict[str, Any]) -> None:
    for path, method, op in operations(document):
        if "requestBody" in op:
            media = op["requestBody"]["content"]["application/json"]
            schema = media["schema"]
            if "$ref" in schema:
                schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            assert "example" in media or "examples" in schema, (path, method)


# --------------------------------------------------------------------------- /docs and /redoc offline

URL_IN_HTML = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")
URL_IN_CSS = re.compile(r"""url\(\s*["']?([^"')]+)["']?\s*\)""")
CDN_HOSTS = ("cdn.jsdelivr.net", "unpkg.com", "cdnjs.cloudflare.com", "fonts.googleapis.com", "fonts.gstatic.com")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_and_their_assets_reference_no_other_host(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    references = [a or b for a, b in URL_IN_HTML.findall(response.text)]
    assert any(r.endswith(".js") for r in references), references
    for reference in references:
        assert not urlsplit(reference).netloc, f"{page} references {reference}"
        asset = client.get(urljoin(page, reference))
        assert asset.status_code == 200, reference
        if reference.endswith(".css"):
            for url in URL_IN_CSS.findall(asset.text):
                assert url.startswith("data:") or not urlsplit(url).netloc, f"{reference} loads {url}"
        if reference.endswith(".js"):
            # A bundle mentions URLs (namespaces, licences, error pages); it must load none from a CDN.
            assert not any(host in asset.text for host in CDN_HOSTS), reference
    assert "validatorUrl" not in response.text or '"validatorUrl": null' in response.text


COUPON = {"code": "SAVE10", "discount_type": "percentage", "discount_value": "10"}
