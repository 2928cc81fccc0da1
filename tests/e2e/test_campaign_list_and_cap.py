"""GET /v1/campaigns (the caller's campaigns, newest first, paged) and the daily cap on the codes a
retailer's campaigns may generate (COUPON_LEDGER_MAX_CODES_PER_DAY, counted in the database)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from tests.support.http import Api, Sql, assert_error, assert_validation_failed

TEMPLATE = {"discount_type": "fixed", "discount_value": "5", "max_uses": 1}
TODAY = "(now() AT TIME ZONE 'UTC')::date"


def create(api: Api, name: str, count: int = 2) -> dict[str, Any]:
    response = api.post("/v1/campaigns", json={"name": name, "prefix": "L-", "count": count, "coupon": TEMPLATE})
    assert response.status_code == 201, response.text
    return response.json()


def pages(api: Api, limit: int) -> list[list[dict[str, Any]]]:
    found: list[list[dict[str, Any]]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        response = api.get("/v1/campaigns", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"data", "next_cursor"}
        found.append(page["data"])
        if page["next_cursor"] is None:
            return found
        params["cursor"] = page["next_cursor"]


# --- GET /v1/campaigns ------------------------------------------------------------------------------


def test_the_campaigns_are_listed_newest_first_each_as_it_is_read_alone(api: Api) -> None:
    created = [create(api, f"Campaign {n}") for n in range(3)]
    api.apply(api.get(f"/v1/campaigns/{created[0]['id']}/coupons").json()["data"][0]["code"], "20.00")

    response = api.get("/v1/campaigns")
    assert response.status_code == 200, response.text
    listed = response.json()
    assert listed["next_cursor"] is None
    assert [c["id"] for c in listed["data"]] == [c["id"] for c in reversed(created)]
    for campaign in listed["data"]:
        assert campaign == api.get(f"/v1/campaigns/{campaign['id']}").json()
    assert listed["data"][-1]["redemptions"] == 1


def test_the_campaigns_are_paged_with_a_cursor_without_gaps_or_repeats(api: Api) -> None:
    created = [create(api, f"Campaign {n}", count=1) for n in range(5)]
    found = pages(api, limit=2)
    assert [len(page) for page in found] == [2, 2, 1]
    assert [c["id"] for page in found for c in page] == [c["id"] for c in reversed(created)]


def test_another_retailers_campaigns_are_never_listed(api: Api, other_api: Api) -> None:
    mine = create(api, "Mine")
    theirs = create(other_api, "Theirs")
    assert [c["id"] for c in api.get("/v1/campaigns").json()["data"]] == [mine["id"]]
    assert [c["id"] for c in other_api.get("/v1/campaigns").json()["data"]] == [theirs["id"]]


def test_a_retailer_without_campaigns_gets_an_empty_list(api: Api) -> None:
    assert api.get("/v1/campaigns").json() == {"data": [], "next_cursor": None}


def test_a_cursor_the_list_did_not_give_is_refused(api: Api) -> None:
    assert assert_validation_failed(api.get("/v1/campaigns", params={"cursor": "bm90LWEtY3Vyc29y"})) == {"cursor"}
    assert assert_validation_failed(api.get("/v1/campaigns", params={"limit": 0})) == {"limit"}


def test_a_rebuilt_read_model_lists_the_same_campaigns(api: Api, app: FastAPI, sql: Sql) -> None:
    from projections.rebuild import rebuild

    created = [create(api, f"Campaign {n}", count=1) for n in range(2)]
    before = api.get("/v1/campaigns").json()
    services = app.state.services
    rebuild(services.ledger, services.coupons_view)
    assert api.get("/v1/campaigns").json() == before
    assert len(before["data"]) == len(created)


# --- the daily cap ----------------------------------------------------------------------------------


def test_every_campaign_counts_its_codes_against_the_retailers_day(api: Api, other_api: Api, sql: Sql) -> None:
    create(api, "One", count=5)
    create(api, "Two", count=7)
    create(other_api, "Elsewhere", count=3)
    assert sql(f"SELECT codes FROM campaign_codes_daily WHERE retailer_id = %s AND day = {TODAY}", api.retailer_id) == [
        (12,)
    ]


def test_a_campaign_past_the_days_limit_is_refused_before_any_code_is_made(api: Api, app: FastAPI, sql: Sql) -> None:
    limit = app.state.services.settings.max_codes_per_day
    sql(
        f"INSERT INTO campaign_codes_daily VALUES (%s, {TODAY}, %s) RETURNING codes", api.retailer_id, limit - 3
    )  # generated earlier today, by this process or another

    refused = api.post("/v1/campaigns", json={"name": "Too many", "prefix": "X-", "count": 4, "coupon": TEMPLATE})
    details = assert_error(refused, 429, "RATE_LIMITED")
    assert details == {"limit": limit, "used": limit - 3, "requested": 4, "retry_after": details["retry_after"]}
    assert 1 <= int(refused.headers["Retry-After"]) <= 86_400
    assert int(refused.headers["Retry-After"]) == details["retry_after"]
    assert api.get("/v1/campaigns").json()["data"] == []
    assert sql("SELECT count(*) FROM coupons WHERE retailer_id = %s", api.retailer_id) == [(0,)]

    create(api, "Just enough", count=3)
    assert sql(f"SELECT codes FROM campaign_codes_daily WHERE retailer_id = %s AND day = {TODAY}", api.retailer_id) == [
        (limit,)
    ]


def test_the_limit_is_the_setting_and_one_retailers_codes_leave_anothers_alone(
    api: Api, other_api: Api, app: FastAPI
) -> None:
    settings = app.state.services.settings
    saved = settings.max_codes_per_day
    settings.max_codes_per_day = 10
    try:
        create(api, "Most of it", count=8)
        assert_error(
            api.post("/v1/campaigns", json={"name": "More", "prefix": "M-", "count": 3, "coupon": TEMPLATE}),
            429,
            "RATE_LIMITED",
        )
        create(other_api, "Theirs", count=10)
    finally:
        settings.max_codes_per_day = saved
