"""POST /v1/campaigns with an Idempotency-Key: a retry is the same campaign, never a second one."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI

from ledger.campaigns import CampaignPlan, campaign_id_for
from ledger.domain import PERCENTAGE
from tests.support.http import Api, assert_error

TEMPLATE = {"discount_type": "percentage", "discount_value": "10"}


def body(**fields: Any) -> dict[str, Any]:
    return {"name": "Spring newsletter", "prefix": "SPRING-", "count": 5, "coupon": TEMPLATE, **fields}


def post(api: Api, key: str, **fields: Any) -> httpx.Response:
    return api.post("/v1/campaigns", json=body(**fields), headers={"Idempotency-Key": key})


def campaigns_of(api: Api) -> list[dict[str, Any]]:
    response = api.get("/v1/campaigns", params={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_a_retried_campaign_request_replays_the_first_response_and_makes_no_second_campaign(api: Api) -> None:
    first = post(api, "spring-1", count=7)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers

    again = post(api, "spring-1", count=7)
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()

    (listed,) = campaigns_of(api)
    assert listed["id"] == first.json()["id"] and listed["generated"] == 7
    response = api.get("/v1/coupons", params={"campaign_id": first.json()["id"], "limit": 200})
    assert len(response.json()["data"]) == 7


def test_the_same_key_with_another_campaign_is_refused(api: Api) -> None:
    assert post(api, "autumn", count=3).status_code == 201
    details = assert_error(post(api, "autumn", count=4), 409, "IDEMPOTENCY_KEY_REUSED")
    assert details["idempotency_key"] == "autumn"
    assert len(campaigns_of(api)) == 1


def test_a_key_names_a_campaign_of_its_retailer_only(api: Api, other_api: Api) -> None:
    mine = post(api, "shared-key")
    theirs = post(other_api, "shared-key")
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert "Idempotent-Replayed" not in theirs.headers
    assert post(api, "shared-key").json() == mine.json()  # each retailer's key replays its own
    assert post(other_api, "shared-key").headers["Idempotent-Replayed"] == "true"


def test_a_retry_that_arrives_while_the_campaign_is_generating_waits_and_replays_it(api: Api) -> None:
    answers: list[httpx.Response] = []

    def send() -> None:
        answers.append(post(api, "big-one", count=3000))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(a.status_code for a in answers) == [201, 201], [a.text for a in answers]
    assert answers[0].json() == answers[1].json()
    assert sorted(a.headers.get("Idempotent-Replayed", "") for a in answers) == ["", "true"]
    (listed,) = campaigns_of(api)
    assert listed["generated"] == 3000


def test_a_retry_after_the_first_run_stopped_midway_generates_only_the_missing_codes(api: Api, app: FastAPI) -> None:
    ledger = app.state.services.ledger
    plan = CampaignPlan(
        api.retailer_id,
        "Spring newsletter",
        "SPRING-",
        5,
        {"discount_type": PERCENTAGE, "discount_value": Decimal("10")},
        chunk=2,
        campaign_id=campaign_id_for(api.retailer_id, "died"),
    )
    start, first_chunk, *_ = plan.commands()
    ledger.execute(start)
    ledger.execute(first_chunk)  # the first run stopped here: 2 codes of 5

    response = post(api, "died")
    assert response.status_code == 201, response.text
    assert response.json()["id"] == str(plan.campaign_id)
    assert response.json()["generated"] == 5
    coupons = api.get("/v1/campaigns/" + str(plan.campaign_id) + "/coupons", params={"limit": 200}).json()["data"]
    assert len({c["code"] for c in coupons}) == 5
