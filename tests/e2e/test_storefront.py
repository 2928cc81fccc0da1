"""Publishable keys and the storefront routes over HTTP: who may call what, verify, the cached list."""

from __future__ import annotations

import json
import re
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import publishable_key_may_call
from api.settings import Settings
from tests.support.http import PAST, Api, assert_error, assert_validation_failed, future
from tests.support.postgres import run_cli

# --- who may call what ----------------------------------------------------------------------------

# Every /v1 route of the app, read from app.routes (its lifespan, which connects, is not started),
# the routes of included routers among them, so that a route added later is covered too.
ROUTES = sorted(
    (method, route.path)
    for route in iter_route_contexts(create_app(Settings(database_url="postgresql://routes-only")).routes)
    if route.path is not None and route.path.startswith("/v1/")
    for method in route.methods or ()
    if method != "HEAD"
)
SECRET_ONLY = [r for r in ROUTES if not publishable_key_may_call(r[1])]
STOREFRONT = [r for r in ROUTES if publishable_key_may_call(r[1])]


def concrete(path: str) -> str:
    """The declared path with each parameter filled in: ids with a UUID, anything else with a code."""
    return re.sub(r"\{([^}]+)\}", lambda m: str(uuid4()) if "id" in m.group(1) else "SAVE10", path)


def call(api: Api, method: str, path: str) -> httpx.Response:
    body = {} if method in ("POST", "PATCH", "PUT") else None
    return api.request(method, concrete(path), json=body)


def test_the_routes_are_sorted_into_both_groups() -> None:
    assert ("POST", "/v1/coupons/apply") in SECRET_ONLY
    assert ("POST", "/v1/checkout") in SECRET_ONLY
    assert ("GET", "/v1/coupons") in SECRET_ONLY
    assert {("POST", "/v1/storefront/coupons/verify"), ("GET", "/v1/storefront/coupons")} <= set(STOREFRONT)


@pytest.mark.parametrize(("method", "path"), SECRET_ONLY, ids=[f"{m} {p}" for m, p in SECRET_ONLY])
def test_a_publishable_key_is_forbidden_on_every_other_route(api: Api, method: str, path: str) -> None:
    api.create_coupon("SAVE10")  # so that a route reaching the coupon would find it
    response = call(api.publishable, method, path)
    details = assert_error(response, 403, "FORBIDDEN")
    assert details == {"key_kind": "publishable", "required_key_kind": "secret"}
    assert "secret API key" in response.json()["error"]["message"]
    # Nothing was done: the coupon is as it was.
    coupon = api.coupon("SAVE10")
    assert coupon["uses_count"] == 0 and coupon["is_active"] is True
    assert [e["type"] for e in api.events("SAVE10")] == ["Coupon.Created"]


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_a_secret_key_may_call_every_route(api: Api, method: str, path: str) -> None:
    response = call(api, method, path)
    assert response.status_code not in (401, 403), response.text


@pytest.mark.parametrize(("method", "path"), STOREFRONT, ids=[f"{m} {p}" for m, p in STOREFRONT])
def test_a_publishable_key_may_call_the_storefront_routes(api: Api, method: str, path: str) -> None:
    response = call(api.publishable, method, path)
    assert response.status_code not in (401, 403), response.text


def test_a_publishable_key_is_refused_on_the_apply_route_whatever_the_body(api: Api) -> None:
    api.create_coupon("SAVE10")
    for body in ({"code": "SAVE10", "subtotal": "100.00"}, {"nonsense": True}):
        assert_error(api.publishable.post("/v1/coupons/apply", json=body), 403, "FORBIDDEN")
    assert api.coupon("SAVE10")["uses_count"] == 0


def test_a_publishable_key_is_refused_before_the_request_is_validated(api: Api) -> None:
    """403 whatever else is wrong: a publishable key learns nothing of a route it may not call."""
    pk = api.publishable
    assert_error(pk.get("/v1/coupons", params={"limit": 0, "cursor": "!!"}), 403, "FORBIDDEN")
    assert_error(pk.post("/v1/coupons", json={"code": "x"}), 403, "FORBIDDEN")
    assert_error(pk.request("PATCH", "/v1/coupons/SAVE10", json={"code": "NEW"}), 403, "FORBIDDEN")
    assert_error(pk.get("/v1/campaigns/not-a-uuid"), 403, "FORBIDDEN")


def test_an_unknown_or_missing_key_is_still_401_on_the_storefront_routes(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer pk_not-a-key"}):
        assert_error(client.get("/v1/storefront/coupons", headers=headers), 401, "UNAUTHENTICATED")
        response = client.post("/v1/storefront/coupons/verify", json={"code": "X"}, headers=headers)
        assert_error(response, 401, "UNAUTHENTICATED")


def test_the_keys_printed_by_retailer_create_work_over_http(client: TestClient, e2e_database_url: str) -> None:
    created = run_cli(e2e_database_url, "retailer", "create", f"cli-shop-{uuid4().hex[:8]}")
    assert created.returncode == 0, created.stderr
    printed = json.loads(created.stdout.strip().splitlines()[-1])
    assert set(printed) == {"retailer_id", "api_key", "publishable_key"}
    assert printed["api_key"].startswith("cl_") and printed["publishable_key"].startswith("pk_")
    secret = {"Authorization": f"Bearer {printed['api_key']}"}
    publishable = {"Authorization": f"Bearer {printed['publishable_key']}"}
    body = {"code": "CLI10", "discount_type": "percentage", "discount_value": "10", "public": True}
    assert client.post("/v1/coupons", json=body, headers=secret).status_code == 201
    assert_error(client.post("/v1/coupons", json={**body, "code": "CLI11"}, headers=publishable), 403, "FORBIDDEN")
    listed = client.get("/v1/storefront/coupons", headers=publishable)
    assert listed.status_code == 200, listed.text
    assert [c["code"] for c in listed.json()["data"]] == ["CLI10"]


def test_the_openapi_document_says_which_routes_answer_a_publishable_key_403(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for method, path in SECRET_ONLY:
        assert paths[path][method.lower()]["responses"]["403"]["x-error-codes"] == ["FORBIDDEN"], (method, path)
    for method, path in STOREFRONT:
        assert "403" not in paths[path][method.lower()]["responses"], (method, path)


def test_a_browser_page_may_call_the_storefront_routes_from_another_origin(api: Api, client: TestClient) -> None:
    preflight = client.options(
        "/v1/storefront/coupons/verify",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    listed = api.publishable.get("/v1/storefront/coupons", headers={"Origin": "https://shop.example"})
    assert listed.status_code == 200
    assert listed.headers["access-control-allow-origin"] == "*"
    assert "ETag" in listed.headers["access-control-expose-headers"]
    # Management routes get no CORS headers: a secret key belongs on a server.
    managed = api.get("/v1/coupons", headers={"Origin": "https://shop.example"})
    assert managed.status_code == 200 and "access-control-allow-origin" not in managed.headers


# --- POST /v1/storefront/coupons/verify ---------------------------------------------------------------


def verify(api: Api, **body: Any) -> httpx.Response:
    return api.publishable.post("/v1/storefront/coupons/verify", json=body)


def test_verify_answers_the_seeds_fields_and_consumes_nothing(api: Api) -> None:
    api.create_coupon("BIENVENIDO20", discount_value="20", max_uses=1)
    for _ in range(2):
        response = verify(api, code=" bienvenido20 ", cart_subtotal=150.00)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "valid": True,
            "discount_amount": "30.00",
            "coupon_type": "percentage",
            "code": "BIENVENIDO20",
            "original_subtotal": "150.00",
            "final_total": "120.00",
            "free_shipping": False,
        }
    coupon = api.coupon("BIENVENIDO20")
    assert coupon["uses_count"] == 0 and coupon["status"] == "active"
    assert [e["type"] for e in api.events("BIENVENIDO20")] == ["Coupon.Created"]


def test_verify_names_each_coupon_type_and_takes_items_and_a_secret_key(api: Api) -> None:
    api.create_coupon("FIVEOFF", discount_type="fixed", discount_value="5.00")
    api.create_coupon("SHIPFREE", discount_type="free_shipping", discount_value=None)
    fixed = verify(api, code="FIVEOFF", items=[{"product_id": "a", "quantity": 2, "unit_price": "12.50"}])
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["coupon_type"] == "fixed"
    assert (fixed.json()["original_subtotal"], fixed.json()["discount_amount"]) == ("25.00", "5.00")
    shipping = verify(api, code="SHIPFREE", cart_subtotal="40", shipping_amount="4.90")
    assert shipping.status_code == 200, shipping.text
    assert shipping.json()["coupon_type"] == "free_shipping"
    assert (shipping.json()["discount_amount"], shipping.json()["free_shipping"]) == ("4.90", True)
    with_secret = api.post("/v1/storefront/coupons/verify", json={"code": "FIVEOFF", "cart_subtotal": "25.00"})
    assert with_secret.status_code == 200 and with_secret.json()["discount_amount"] == "5.00"


def test_verify_refuses_with_each_rule_s_code(api: Api) -> None:
    api.create_coupon("OFF1", is_active=False)
    api.create_coupon("GONE1", expires_at=PAST)
    api.create_coupon("LATER1", starts_at=future())
    api.create_coupon("ONCE1", max_uses=1)
    assert api.apply("ONCE1", "10.00").status_code == 201
    api.create_coupon("MIN50", min_order_value="50.00")
    api.create_coupon("LAMPS15", scope={"product_ids": ["lamp-1"]})
    api.create_coupon("NOCARDS", scope={"excluded_category_ids": ["gift-cards"]})

    assert assert_error(verify(api, code="NOPE99", cart_subtotal="10"), 404, "COUPON_NOT_FOUND") == {"code": "NOPE99"}
    assert assert_error(verify(api, code="OFF1", cart_subtotal="10"), 422, "COUPON_INACTIVE") == {}
    details = assert_error(verify(api, code="GONE1", cart_subtotal="10"), 422, "COUPON_EXPIRED")
    assert details == {"expired_at": PAST}
    details = assert_error(verify(api, code="LATER1", cart_subtotal="10"), 422, "COUPON_NOT_STARTED")
    assert set(details) == {"starts_at"}
    response = verify(api, code="ONCE1", cart_subtotal="10")
    assert assert_error(response, 422, "USAGE_LIMIT_REACHED") == {}  # not the limit itself
    assert "1" not in response.json()["error"]["message"].replace("ONCE1", "")
    details = assert_error(verify(api, code="MIN50", cart_subtotal="49.99"), 422, "MIN_ORDER_NOT_MET")
    assert details == {"required_minimum": "50.00", "subtotal": "49.99"}
    card = {"product_id": "card-9", "category_id": "gift-cards", "quantity": 1, "unit_price": "50.00"}
    details = assert_error(verify(api, code="LAMPS15", items=[card]), 422, "COUPON_NOT_APPLICABLE")
    assert details["reason"] == "no_eligible_items"
    details = assert_error(verify(api, code="NOCARDS", items=[card]), 422, "COUPON_NOT_APPLICABLE")
    assert details == {"reason": "category_excluded", "product_ids": ["card-9"], "category_ids": ["gift-cards"]}
    # A scoped coupon without the cart's lines cannot be priced.
    details = assert_error(verify(api, code="LAMPS15", cart_subtotal="50.00"), 422, "COUPON_NOT_APPLICABLE")
    assert details == {"reason": "no_eligible_items"}


def test_verify_hides_per_customer_limits_and_campaign_budgets(api: Api) -> None:
    api.create_coupon("ONEEACH", max_uses_per_customer=1)
    assert api.apply("ONEEACH", "10.00", customer_id="cust-1").status_code == 201
    response = verify(api, code="ONEEACH", cart_subtotal="10")
    assert assert_error(response, 422, "CUSTOMER_ID_REQUIRED") == {}
    response = verify(api, code="ONEEACH", cart_subtotal="10", customer_id="cust-1")
    assert assert_error(response, 422, "CUSTOMER_LIMIT_REACHED") == {"customer_id": "cust-1"}
    assert verify(api, code="ONEEACH", cart_subtotal="10", customer_id="cust-2").status_code == 200

    campaign = api.post(
        "/v1/campaigns",
        json={
            "name": "Secret spring plan",
            "prefix": "SPRING-",
            "count": 1,
            "max_redemptions": 1,
            "coupon": {"discount_type": "fixed", "discount_value": "5.00"},
        },
    )
    assert campaign.status_code == 201, campaign.text
    (code,) = [c["code"] for c in api.get(f"/v1/campaigns/{campaign.json()['id']}/coupons").json()["data"]]
    assert api.apply(code, "10.00").status_code == 201
    response = verify(api, code=code, cart_subtotal="10")
    assert assert_error(response, 422, "CAMPAIGN_BUDGET_EXHAUSTED") == {}
    assert "Secret spring plan" not in response.text and campaign.json()["id"] not in response.text
    # The secret key's own validate still tells the retailer everything.
    full = api.post("/v1/coupons/validate", json={"code": code, "subtotal": "10"})
    assert assert_error(full, 422, "CAMPAIGN_BUDGET_EXHAUSTED")["max_redemptions"] == 1


def test_verify_never_finds_another_retailer_s_coupon(api: Api, other_api: Api) -> None:
    other_api.create_coupon("THEIRS10")
    assert_error(verify(api, code="THEIRS10", cart_subtotal="10"), 404, "COUPON_NOT_FOUND")
    assert verify(other_api, code="THEIRS10", cart_subtotal="10").status_code == 200


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"cart_subtotal": "10"}, {"code"}),
        ({"code": "SAVE10"}, {"cart_subtotal"}),
        ({"code": "SAVE10", "cart_subtotal": None}, {"cart_subtotal"}),
        ({"code": "SAVE10", "cart_subtotal": "-1"}, {"cart_subtotal"}),
        ({"code": "SAVE10", "cart_subtotal": "1.234"}, {"cart_subtotal"}),
        ({"code": "SAVE10", "cart_subtotal": "abc"}, {"cart_subtotal"}),
        ({"code": "SAVE10", "items": []}, {"items"}),
        ({"code": "SAVE10", "items": [{"product_id": "a", "quantity": 0, "unit_price": "1"}]}, {"items.0.quantity"}),
        ({"code": "SAVE10", "cart_subtotal": "10", "tenant_id": 1}, {"tenant_id"}),
        ({"code": "SAVE10", "cart_subtotal": "10", "coupon": "x"}, {"coupon"}),
        ({"code": "SAVE10", "cart_subtotal": "10", "customer_id": " "}, {"customer_id"}),
        ({"code": "SAV\u0000E10", "cart_subtotal": "10"}, {"code"}),
        ([1, 2], {"body"}),
    ],
)
def test_verify_refuses_a_bad_body_naming_each_field(api: Api, body: Any, fields: set[str]) -> None:
    api.create_coupon("SAVE10")
    response = api.publishable.post("/v1/storefront/coupons/verify", json=body)
    assert assert_validation_failed(response) == fields


def test_verify_refuses_a_body_that_is_not_json_and_a_cart_whose_subtotal_is_not_its_items_sum(api: Api) -> None:
    api.create_coupon("SAVE10")
    raw = api.publishable.post(
        "/v1/storefront/coupons/verify", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert assert_validation_failed(raw) == {"body"}
    line = {"product_id": "a", "quantity": 2, "unit_price": "10.00"}
    details = assert_error(verify(api, code="SAVE10", cart_subtotal="25.00", items=[line]), 422, "SUBTOTAL_MISMATCH")
    assert details == {"subtotal": "25.00", "items_subtotal": "20.00"}


# --- GET /v1/storefront/coupons -----------------------------------------------------------------------

SHOPPER_FIELDS = {
    "code",
    "discount_type",
    "discount_value",
    "min_order_value",
    "max_discount_amount",
    "starts_at",
    "expires_at",
}


def storefront_list(api: Api, headers: dict[str, str] | None = None, **params: Any) -> httpx.Response:
    return api.publishable.get("/v1/storefront/coupons", params=params, headers=headers)


def vary(response: httpx.Response) -> set[str]:
    return {name.strip() for name in response.headers["Vary"].split(",")}


def listed_codes(api: Api, **params: Any) -> list[str]:
    response = storefront_list(api, **params)
    assert response.status_code == 200, response.text
    return [c["code"] for c in response.json()["data"]]


def test_the_list_holds_only_the_active_public_coupons_with_shopper_safe_fields(api: Api, other_api: Api) -> None:
    expires = "2031-06-30T23:59:59Z"
    api.create_coupon(
        "PUB10",
        public=True,
        min_order_value="50.00",
        max_discount_amount="30.00",
        max_uses=100,
        max_uses_per_customer=2,
        starts_at="2020-01-01T00:00:00Z",
        expires_at=expires,
    )
    api.create_coupon("SHIPPUB", discount_type="free_shipping", discount_value=None, public=True)
    api.create_coupon("PRIVATE1")  # not public
    api.create_coupon("PUBOFF", public=True, is_active=False)
    api.create_coupon("PUBGONE", public=True, expires_at=PAST)
    api.create_coupon("PUBLATER", public=True, starts_at=future())
    api.create_coupon("PUBUSED", public=True, max_uses=1)
    assert api.apply("PUBUSED", "10.00").status_code == 201
    api.create_coupon("PUBARCH", public=True)
    assert api.request("DELETE", "/v1/coupons/PUBARCH").status_code == 204
    other_api.create_coupon("THEIRPUB", public=True)

    response = storefront_list(api)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert response.json()["next_cursor"] is None
    assert [c["code"] for c in data] == ["PUB10", "SHIPPUB"]
    assert all(set(c) == SHOPPER_FIELDS for c in data)
    assert data[0] == {
        "code": "PUB10",
        "discount_type": "percentage",
        "discount_value": "10.00",
        "min_order_value": "50.00",
        "max_discount_amount": "30.00",
        "starts_at": "2020-01-01T00:00:00Z",
        "expires_at": expires,
    }
    assert data[1] == {
        "code": "SHIPPUB",
        "discount_type": "free_shipping",
        "discount_value": None,
        "min_order_value": None,
        "max_discount_amount": None,
        "starts_at": None,
        "expires_at": None,
    }
    # The other retailer sees its own only; a secret key lists the same as the publishable one.
    assert listed_codes(other_api) == ["THEIRPUB"]
    assert api.get("/v1/storefront/coupons").json() == response.json()


def test_the_list_is_paged_in_code_order(api: Api) -> None:
    codes = [f"PAGE{n}" for n in range(5)]
    for code in reversed(codes):
        api.create_coupon(code, public=True)
    api.create_coupon("PAGE25")  # not public, between two public ones
    seen: list[str] = []
    cursor = None
    for _ in range(3):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = storefront_list(api, **params).json()
        seen += [c["code"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == codes and cursor is None


@pytest.mark.parametrize(
    ("params", "field"), [({"limit": 0}, "limit"), ({"limit": 201}, "limit"), ({"cursor": "!!"}, "cursor")]
)
def test_the_list_refuses_bad_paging(api: Api, params: dict[str, Any], field: str) -> None:
    assert assert_validation_failed(storefront_list(api, **params)) == {field}


def test_the_list_is_cacheable_with_a_strong_etag_and_304(api: Api) -> None:
    api.create_coupon("CACHE10", public=True)
    first = storefront_list(api)
    second = storefront_list(api)
    etag = first.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    assert second.headers["ETag"] == etag and second.content == first.content
    assert first.headers["Cache-Control"] == "public, max-age=60"
    # Each key has its own list; Origin: the CORS headers depend on it (a page calls from the browser).
    assert vary(first) == {"Authorization", "Origin"}

    for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        cached = storefront_list(api, headers={"If-None-Match": if_none_match})
        assert cached.status_code == 304, if_none_match
        assert cached.content == b""
        assert cached.headers["ETag"] == etag
        assert cached.headers["Cache-Control"] == "public, max-age=60"
        assert vary(cached) == {"Authorization", "Origin"}
    for if_none_match in ('"other"', etag.strip('"'), "", "garbage,,"):
        fresh = storefront_list(api, headers={"If-None-Match": if_none_match})
        assert fresh.status_code == 200 and fresh.content == first.content, if_none_match

    # A change to a listed coupon makes a new list: a new ETag, and the old one no longer matches.
    assert api.request("PATCH", "/v1/coupons/CACHE10", json={"min_order_value": "20.00"}).status_code == 200
    changed = storefront_list(api, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert changed.json()["data"][0]["min_order_value"] == "20.00"
    # So does a coupon leaving the list.
    assert api.post("/v1/coupons/CACHE10/deactivate").status_code == 200
    emptied = storefront_list(api, headers={"If-None-Match": changed.headers["ETag"]})
    assert emptied.status_code == 200 and emptied.json() == {"data": [], "next_cursor": None}
    assert emptied.headers["ETag"] not in (etag, changed.headers["ETag"])


def test_a_private_coupon_changing_leaves_the_etag_alone(api: Api) -> None:
    api.create_coupon("SHOWN1", public=True)
    etag = storefront_list(api).headers["ETag"]
    api.create_coupon("HIDDEN1")
    assert api.apply("HIDDEN1", "10.00").status_code == 201
    assert storefront_list(api, headers={"If-None-Match": etag}).status_code == 304
