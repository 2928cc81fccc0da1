"""Campaigns over HTTP: codes generated in bulk from one template, a campaign-wide budget, and the
campaign's codes read a page at a time or all at once as CSV."""

from __future__ import annotations

import csv
import io
import re
from typing import Any
from uuid import uuid4

import pytest

from api.routes.campaigns import CSV_ROWS_PER_CHUNK
from ledger.domain import GENERATED_ALPHABET, GENERATED_LENGTH
from tests.support.http import Api, assert_error, assert_validation_failed

TEMPLATE = {"discount_type": "percentage", "discount_value": "10"}
SCOPE = {
    "product_ids": [],
    "variant_ids": [],
    "category_ids": ["7", "shoes"],
    "excluded_product_ids": ["sku-9"],
    "excluded_category_ids": [],
}


def campaign_body(**fields: Any) -> dict[str, Any]:
    return {"name": "Spring newsletter", "prefix": "SPRING-", "count": 5, "coupon": TEMPLATE, **fields}


def create_campaign(api: Api, **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/campaigns", json=campaign_body(**fields))
    assert response.status_code == 201, response.text
    return response.json()


def all_coupons(api: Api, campaign_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """Every coupon of the campaign, following the cursors."""
    coupons: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        response = api.get(f"/v1/campaigns/{campaign_id}/coupons", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        coupons += page["data"]
        if page["next_cursor"] is None:
            return coupons
        params["cursor"] = page["next_cursor"]


def codes_of(api: Api, campaign_id: str) -> list[str]:
    return [c["code"] for c in all_coupons(api, campaign_id)]


# --- create and read -------------------------------------------------------------------------------


def test_a_campaign_is_created_with_every_code_generated_from_its_template(api: Api) -> None:
    template = {
        "discount_type": "percentage",
        "discount_value": 15,
        "max_discount_amount": "20",
        "min_order_value": 30,
        "max_uses": 1,
        "max_uses_per_customer": 1,
        "starts_at": "2020-01-01T00:00:00+02:00",
        "expires_at": "2099-12-31T23:59:59Z",
        "scope": {"category_ids": ["shoes", 7], "excluded_product_ids": ["sku-9"]},
        "public": True,
    }
    body = campaign_body(name="Newsletter", prefix=" spring-", count=25, coupon=template)
    response = api.post("/v1/campaigns", json={**body, "max_redemptions": 10, "max_discount_total": 99.5})
    assert response.status_code == 201, response.text
    campaign = response.json()

    assert set(campaign) == {
        "id",
        "name",
        "prefix",
        "count",
        "generated",
        "coupon",
        "max_redemptions",
        "max_discount_total",
        "redemptions",
        "discount_total",
        "created_at",
        "results",
    }
    assert campaign["name"] == "Newsletter"
    assert campaign["prefix"] == "SPRING-"
    assert campaign["count"] == campaign["generated"] == 25
    assert campaign["max_redemptions"] == 10
    assert campaign["max_discount_total"] == "99.50"
    assert campaign["redemptions"] == 0 and campaign["discount_total"] == "0.00"
    assert campaign["coupon"] == {
        "discount_type": "percentage",
        "discount_value": "15.00",
        "max_discount_amount": "20.00",
        "min_order_value": "30.00",
        "max_uses": 1,
        "max_uses_per_customer": 1,
        "starts_at": "2019-12-31T22:00:00Z",
        "expires_at": "2099-12-31T23:59:59Z",
        "scope": SCOPE,
        "public": True,
        "is_active": True,
    }
    assert api.get(f"/v1/campaigns/{campaign['id']}").json() == campaign

    coupons = all_coupons(api, campaign["id"])
    assert len(coupons) == 25
    for coupon in coupons:
        assert coupon["campaign_id"] == campaign["id"]
        assert api.coupon(coupon["code"])["campaign_id"] == campaign["id"]
        assert coupon["discount_type"] == "percentage" and coupon["discount_value"] == "15.00"
        assert coupon["max_discount_amount"] == "20.00" and coupon["max_uses_per_customer"] == 1
        assert coupon["scope"] == SCOPE
        assert coupon["public"] is True and coupon["status"] == "active"


def test_codes_are_the_prefix_and_six_characters_without_look_alikes_all_distinct(api: Api) -> None:
    campaign = create_campaign(api, prefix="Fall_", count=1500)  # two saves
    codes = codes_of(api, campaign["id"])
    assert len(codes) == len(set(codes)) == 1500
    assert codes == sorted(codes)
    pattern = re.compile(f"FALL_[{GENERATED_ALPHABET}]{{{GENERATED_LENGTH}}}")
    assert all(pattern.fullmatch(code) for code in codes)
    assert not set("".join(code[len("FALL_") :] for code in codes)) & set("01OIL")


def test_a_campaign_without_a_prefix_has_codes_of_the_six_random_characters(api: Api) -> None:
    campaign = create_campaign(api, prefix="", count=3)
    assert campaign["prefix"] == ""
    assert all(re.fullmatch(f"[{GENERATED_ALPHABET}]{{6}}", code) for code in codes_of(api, campaign["id"]))


def test_the_codes_of_a_campaign_are_coupons_like_any_other(api: Api) -> None:
    campaign = create_campaign(api, count=2, coupon={"discount_type": "fixed", "discount_value": "4.5"})
    code = codes_of(api, campaign["id"])[0]
    redeemed = api.apply(code.lower(), "20")
    assert redeemed.status_code == 201, redeemed.text
    assert redeemed.json()["discount_amount"] == "4.50"
    assert api.coupon(code)["uses_count"] == 1
    assert api.post(f"/v1/coupons/{code}/deactivate").json()["status"] == "inactive"
    assert [c["status"] for c in all_coupons(api, campaign["id"]) if c["code"] == code] == ["inactive"]
    created = api.post("/v1/coupons", json={"code": code, "discount_type": "fixed", "discount_value": 1})
    assert_error(created, 409, "COUPON_CODE_TAKEN")


def test_a_free_shipping_template_gives_free_shipping_codes(api: Api) -> None:
    campaign = create_campaign(api, count=1, coupon={"discount_type": "free_shipping", "min_order_value": "25"})
    assert campaign["coupon"]["discount_type"] == "free_shipping"
    assert campaign["coupon"]["discount_value"] is None
    (code,) = codes_of(api, campaign["id"])
    quote = api.post("/v1/coupons/validate", json={"code": code, "subtotal": "40", "shipping_amount": "6.90"})
    assert quote.status_code == 200, quote.text
    assert quote.json()["discount_amount"] == "6.90" and quote.json()["free_shipping"] is True


def test_a_campaign_of_inactive_codes_lists_them_inactive(api: Api) -> None:
    campaign = create_campaign(api, count=3, coupon={**TEMPLATE, "is_active": False})
    assert {c["status"] for c in all_coupons(api, campaign["id"])} == {"inactive"}
    assert_error(api.apply(codes_of(api, campaign["id"])[0], "50"), 422, "COUPON_INACTIVE")


# --- not found -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/campaigns/{id}", "/v1/campaigns/{id}/coupons", "/v1/campaigns/{id}/coupons?format=csv"]
)
def test_an_unknown_or_malformed_campaign_id_is_campaign_not_found(api: Api, path: str) -> None:
    unknown = str(uuid4())
    details = assert_error(api.get(path.format(id=unknown)), 404, "CAMPAIGN_NOT_FOUND")
    assert details == {"campaign_id": unknown}
    for malformed in ("not-a-uuid", "12345", "%20"):
        assert_error(api.get(path.format(id=malformed)), 404, "CAMPAIGN_NOT_FOUND")


@pytest.mark.parametrize(
    "path", ["/v1/campaigns/{id}", "/v1/campaigns/{id}/coupons", "/v1/campaigns/{id}/coupons?format=csv"]
)
def test_another_retailers_campaign_is_not_found_like_a_missing_one(api: Api, other_api: Api, path: str) -> None:
    campaign = create_campaign(api, count=2)
    theirs = other_api.get(path.format(id=campaign["id"]))
    details = assert_error(theirs, 404, "CAMPAIGN_NOT_FOUND")
    assert details == {"campaign_id": campaign["id"]}
    assert theirs.json()["error"]["message"] == f"Campaign {campaign['id']} does not exist."
    assert "text/csv" not in theirs.headers["content-type"]


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"name": None}, "name"),
        ({"prefix": "P" * 45}, "prefix"),
        ({"prefix": "NO SPACE"}, "prefix"),
        ({"prefix": "ÄPFEL"}, "prefix"),
        ({"prefix": 12}, "prefix"),
        ({"count": 0}, "count"),
        ({"count": 100_001}, "count"),
        ({"count": "5"}, "count"),
        ({"count": True}, "count"),
        ({"count": 2.5}, "count"),
        ({"coupon": None}, "coupon"),
        ({"coupon": []}, "coupon"),
        ({"coupon": {"discount_value": "10"}}, "coupon.discount_type"),
        ({"coupon": {"discount_type": "bogo", "discount_value": "10"}}, "coupon.discount_type"),
        ({"coupon": {"discount_type": "percentage"}}, "coupon.discount_value"),
        ({"coupon": {**TEMPLATE, "discount_value": "-1"}}, "coupon.discount_value"),
        ({"coupon": {**TEMPLATE, "discount_value": "101"}}, "coupon.discount_value"),
        ({"coupon": {**TEMPLATE, "code": "SAVE10"}}, "coupon.code"),
        ({"coupon": {**TEMPLATE, "campaign_id": str(uuid4())}}, "coupon.campaign_id"),
        ({"coupon": {**TEMPLATE, "max_uses": 0}}, "coupon.max_uses"),
        (
            {"coupon": {"discount_type": "fixed", "discount_value": 5, "max_discount_amount": 2}},
            "coupon.max_discount_amount",
        ),
        (
            {"coupon": {**TEMPLATE, "starts_at": "2027-02-01T00:00:00Z", "expires_at": "2027-01-01T00:00:00Z"}},
            "coupon.expires_at",
        ),
        ({"coupon": {**TEMPLATE, "scope": {"brand_ids": ["x"]}}}, "coupon.scope.brand_ids"),
        ({"max_redemptions": 0}, "max_redemptions"),
        ({"max_redemptions": "3"}, "max_redemptions"),
        ({"max_discount_total": "0"}, "max_discount_total"),
        ({"max_discount_total": "10.001"}, "max_discount_total"),
        ({"max_discount_total": "NaN"}, "max_discount_total"),
        ({"budget": 10}, "budget"),
    ],
)
def test_an_invalid_campaign_is_refused_naming_the_field_and_creates_nothing(
    api: Api, change: dict[str, Any], field: str
) -> None:
    response = api.post("/v1/campaigns", json={**campaign_body(), **change})
    assert field in assert_validation_failed(response), response.text
    assert api.list_codes() == []


@pytest.mark.parametrize("missing", ["name", "prefix", "count", "coupon"])
def test_each_required_field_is_named_when_missing(api: Api, missing: str) -> None:
    body = {k: v for k, v in campaign_body().items() if k != missing}
    assert assert_validation_failed(api.post("/v1/campaigns", json=body)) == {missing}


def test_a_body_that_is_not_an_object_is_refused(api: Api) -> None:
    assert "body" in assert_validation_failed(api.post("/v1/campaigns", json=[campaign_body()]))
    response = api.client.post(
        "/v1/campaigns", content=b"{", headers={**api.headers, "Content-Type": "application/json"}
    )
    assert assert_validation_failed(response) == {"body"}


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "cursor=!!", "cursor=QQ", "format=xml"])
def test_invalid_paging_of_a_campaigns_coupons_is_refused(api: Api, query: str) -> None:
    campaign = create_campaign(api, count=1)
    response = api.get(f"/v1/campaigns/{campaign['id']}/coupons?{query}")
    assert assert_validation_failed(response) == {query.split("=")[0]}


# --- the campaign's budget -------------------------------------------------------------------------


def test_max_redemptions_stops_the_campaign_across_its_codes(api: Api) -> None:
    campaign = create_campaign(api, count=4, max_redemptions=2)
    first, second, third, _ = codes_of(api, campaign["id"])
    assert api.apply(first, "100").status_code == 201
    assert api.apply(second, "100").status_code == 201

    refused = api.apply(third, "100", key="third")
    details = assert_error(refused, 422, "CAMPAIGN_BUDGET_EXHAUSTED")
    assert details == {"campaign_id": campaign["id"], "max_redemptions": 2, "redemptions": 2}
    preview = api.post("/v1/coupons/validate", json={"code": third, "subtotal": "100"})
    assert assert_error(preview, 422, "CAMPAIGN_BUDGET_EXHAUSTED") == details
    assert api.coupon(third)["uses_count"] == 0

    now = api.get(f"/v1/campaigns/{campaign['id']}").json()
    assert (now["redemptions"], now["discount_total"]) == (2, "20.00")


def test_max_discount_total_is_never_exceeded_by_a_cent(api: Api) -> None:
    campaign = create_campaign(
        api, count=3, coupon={"discount_type": "fixed", "discount_value": "10"}, max_discount_total="25.00"
    )
    first, second, third = codes_of(api, campaign["id"])
    assert api.apply(first, "50").status_code == 201
    assert api.apply(second, "50").status_code == 201

    details = assert_error(api.apply(third, "50"), 422, "CAMPAIGN_BUDGET_EXHAUSTED")
    assert details == {
        "campaign_id": campaign["id"],
        "max_discount_total": "25.00",
        "discount_total": "20.00",
        "remaining": "5.00",
        "discount_amount": "10.00",
    }
    # A smaller order whose discount fits what is left still passes, and then nothing does.
    fits = api.apply(third, "5")
    assert fits.status_code == 201, fits.text
    assert fits.json()["discount_amount"] == "5.00"
    spent = assert_error(api.apply(first, "50"), 422, "CAMPAIGN_BUDGET_EXHAUSTED")
    assert spent == {
        "campaign_id": campaign["id"],
        "max_discount_total": "25.00",
        "discount_total": "25.00",
        "remaining": "0.00",
    }
    now = api.get(f"/v1/campaigns/{campaign['id']}").json()
    assert (now["redemptions"], now["discount_total"]) == (3, "25.00")


def test_a_coupon_refusal_comes_before_the_campaign_budget(api: Api) -> None:
    campaign = create_campaign(api, count=2, max_redemptions=1, coupon={**TEMPLATE, "min_order_value": "50"})
    first, second = codes_of(api, campaign["id"])
    assert api.apply(first, "60").status_code == 201
    api.post(f"/v1/coupons/{second}/deactivate")
    assert_error(api.apply(second, "10"), 422, "COUPON_INACTIVE")  # DESIGN §3: active before budget
    api.post(f"/v1/coupons/{second}/activate")
    assert_error(api.apply(second, "10"), 422, "CAMPAIGN_BUDGET_EXHAUSTED")  # budget before minimum


def test_a_reversed_redemption_gives_the_campaign_its_budget_back(api: Api) -> None:
    campaign = create_campaign(api, count=2, max_redemptions=1)
    first, second = codes_of(api, campaign["id"])
    redemption = api.apply(first, "100").json()
    assert_error(api.apply(second, "100"), 422, "CAMPAIGN_BUDGET_EXHAUSTED")
    reversed_ = api.post(f"/v1/redemptions/{redemption['redemption_id']}/reverse")
    assert reversed_.status_code == 200, reversed_.text
    assert api.get(f"/v1/campaigns/{campaign['id']}").json()["redemptions"] == 0
    assert api.apply(second, "100").status_code == 201


# --- listing ---------------------------------------------------------------------------------------


def test_a_campaigns_coupons_come_in_pages_in_code_order(api: Api) -> None:
    campaign = create_campaign(api, count=7)
    everything = codes_of(api, campaign["id"])
    pages: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get(f"/v1/campaigns/{campaign['id']}/coupons", params=params).json()
        pages.append([c["code"] for c in page["data"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [code for page in pages for code in page] == everything == sorted(everything)


def test_the_coupon_list_filters_by_campaign(api: Api) -> None:
    spring = create_campaign(api, prefix="SPRING-", count=3)
    fall = create_campaign(api, prefix="FALL-", count=2)
    api.create_coupon("LOOSE1")
    assert api.list_codes(campaign_id=spring["id"]) == codes_of(api, spring["id"])
    assert api.list_codes(campaign_id=fall["id"]) == codes_of(api, fall["id"])
    assert len(api.list_codes()) == 6
    assert api.list_codes(campaign_id=str(uuid4())) == []
    first = codes_of(api, spring["id"])[0]
    api.post(f"/v1/coupons/{first}/deactivate")
    assert api.list_codes(campaign_id=spring["id"], status="inactive") == [first]


def test_a_campaign_created_by_another_retailer_is_not_in_the_coupon_list(api: Api, other_api: Api) -> None:
    theirs = create_campaign(other_api, count=2)
    assert api.list_codes(campaign_id=theirs["id"]) == []
    assert api.list_codes() == []


# --- CSV -------------------------------------------------------------------------------------------


def test_the_csv_export_streams_every_code_with_its_status_and_uses(api: Api) -> None:
    count = 2 * CSV_ROWS_PER_CHUNK + 3  # more than one streamed piece
    campaign = create_campaign(api, count=count, coupon={**TEMPLATE, "max_uses": 1})
    coupons = all_coupons(api, campaign["id"])
    used = coupons[5]["code"]
    assert api.apply(used, "100").status_code == 201

    response = api.get(f"/v1/campaigns/{campaign['id']}/coupons", params={"format": "csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="campaign-{campaign["id"]}.csv"'
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["code", "status", "uses_count", "max_uses"]
    assert [row[0] for row in rows[1:]] == [c["code"] for c in coupons]
    by_code = {row[0]: row[1:] for row in rows[1:]}
    assert by_code[used] == ["count_expired", "1", "1"]
    assert {tuple(v) for code, v in by_code.items() if code != used} == {("active", "0", "1")}
    assert response.text.endswith("\r\n")


def test_the_csv_export_leaves_max_uses_empty_when_unlimited_and_reflects_a_write_just_made(api: Api) -> None:
    campaign = create_campaign(api, count=2)
    first = codes_of(api, campaign["id"])[0]
    api.post(f"/v1/coupons/{first}/deactivate")
    text = api.get(f"/v1/campaigns/{campaign['id']}/coupons?format=csv").text
    lines = text.splitlines()
    assert len(lines) == 3
    assert f"{first},inactive,0," in lines
