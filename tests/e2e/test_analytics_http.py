"""GET /v1/redemptions (the redemption log, and one redemption), GET /v1/analytics/daily (figures
per local day of any zone, JSON or CSV) and a campaign's results: every path of a use lands in the
log, writes are read back at once, another retailer sees none of it, a publishable key none at all."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from api.database import eventsourcing_env
from ledger.application import CouponLedger
from tests.support.commands import apply, create_coupon, reverse
from tests.support.http import Api, assert_error, assert_validation_failed
from tests.support.postgres import ledger_with_clock

D = Decimal
REDEMPTION_FIELDS = {
    "redemption_id",
    "code",
    "campaign_id",
    "customer_id",
    "order_id",
    "occurred_at",
    "original_subtotal",
    "discount_amount",
    "final_total",
    "reversed_at",
}


def redemptions(api: Api, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/v1/redemptions", params={"limit": 200, **params})
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return list(response.json()["data"])


def daily(api: Api, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/v1/analytics/daily", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_every_path_of_a_use_lands_in_the_redemption_log_at_once(api: Api) -> None:
    api.create_coupon("EVERYPATH", discount_type="fixed", discount_value="5")
    tote = api.add_product("Tote", "20.00", 10)
    plain = created(api.apply("EVERYPATH", "50.00", customer_id="c-1", order_id="o-1"))
    keyed = created(api.apply("EVERYPATH", "40.00", key=f"k-{uuid4()}"))
    hold = created(api.post("/v1/coupons/reserve", json={"code": "EVERYPATH", "subtotal": "30.00"}))
    confirmed = api.post(f"/v1/reservations/{hold['reservation_id']}/confirm", json={"order_id": "o-3"})
    assert confirmed.status_code in (200, 201), confirmed.text
    order = created(
        api.post(
            "/v1/checkout",
            json={"user_id": 7, "items": [{"product_id": tote["id"], "quantity": 1}], "coupon_code": "EVERYPATH"},
        )
    )
    session = created(
        api.post(
            "/v1/checkout/sessions",
            json={"session_id": f"s-{uuid4().hex[:12]}", "items": [{"product_id": tote["id"], "quantity": 2}]},
        )
    )
    assert (
        api.post(f"/v1/checkout/sessions/{session['session_id']}/coupon", json={"code": "EVERYPATH"}).status_code == 200
    )
    session_order = created(api.post("/v1/checkout", json={"session_id": session["session_id"], "user_id": 8}))

    log = redemptions(api)

    assert [r["redemption_id"] for r in log] == [
        plain["redemption_id"],
        keyed["redemption_id"],
        confirmed.json()["redemption_id"],
        order["redemption_id"],
        session_order["redemption_id"],
    ]
    assert all(set(r) == REDEMPTION_FIELDS for r in log)
    assert log[0] | {"redemption_id": None, "occurred_at": None} == {
        "redemption_id": None,
        "code": "EVERYPATH",
        "campaign_id": None,
        "customer_id": "c-1",
        "order_id": "o-1",
        "occurred_at": None,
        "original_subtotal": "50.00",
        "discount_amount": "5.00",
        "final_total": "45.00",
        "reversed_at": None,
    }
    assert log[0]["occurred_at"].endswith("Z")
    assert [(r["original_subtotal"], r["final_total"]) for r in log[3:]] == [("20.00", "15.00"), ("40.00", "35.00")]
    assert log[3]["order_id"] == str(order["id"])

    reversed_ = api.post(f"/v1/redemptions/{keyed['redemption_id']}/reverse")
    assert reversed_.status_code == 200, reversed_.text
    one = api.get(f"/v1/redemptions/{keyed['redemption_id']}")
    assert one.status_code == 200, one.text
    assert one.json()["reversed_at"] == reversed_.json()["reversed_at"]
    assert one.json()["final_total"] == "35.00"


def test_another_retailer_sees_none_of_it_and_a_publishable_key_is_forbidden(api: Api, other_api: Api) -> None:
    api.create_coupon("MINEONLY", discount_type="fixed", discount_value="5")
    used = created(api.apply("MINEONLY", "50.00"))
    campaign = created(
        api.post(
            "/v1/campaigns",
            json={
                "name": "Mine",
                "prefix": "MINE-",
                "count": 1,
                "coupon": {"discount_type": "fixed", "discount_value": "1"},
            },
        )
    )
    today = datetime.now(UTC).date().isoformat()

    assert redemptions(other_api) == []
    assert redemptions(other_api, code="MINEONLY") == []
    assert_error(other_api.get(f"/v1/redemptions/{used['redemption_id']}"), 404, "REDEMPTION_NOT_FOUND")
    assert_error(api.get("/v1/redemptions/not-a-uuid"), 404, "REDEMPTION_NOT_FOUND")
    assert_error(api.get(f"/v1/redemptions/{uuid4()}"), 404, "REDEMPTION_NOT_FOUND")
    assert daily(other_api, **{"from": today, "to": today, "group_by": "retailer"}) == []
    assert_error(other_api.get(f"/v1/campaigns/{campaign['id']}"), 404, "CAMPAIGN_NOT_FOUND")
    assert daily(api, **{"from": today, "to": today, "group_by": "coupon"})[0]["code"] == "MINEONLY"

    shop = api.publishable
    for path in (
        "/v1/redemptions",
        f"/v1/redemptions/{used['redemption_id']}",
        f"/v1/analytics/daily?from={today}&to={today}&group_by=coupon",
    ):
        assert_error(shop.get(path), 403, "FORBIDDEN")


def test_the_log_is_filtered_by_code_campaign_customer_and_time_and_paged_with_a_cursor(api: Api) -> None:
    api.create_coupon("FILTERA", discount_type="fixed", discount_value="1")
    api.create_coupon("FILTERB", discount_type="fixed", discount_value="1")
    campaign = created(
        api.post(
            "/v1/campaigns",
            json={
                "name": "F",
                "prefix": "FC-",
                "count": 1,
                "coupon": {"discount_type": "fixed", "discount_value": "1"},
            },
        )
    )
    (campaign_code,) = [c["code"] for c in api.get(f"/v1/campaigns/{campaign['id']}/coupons").json()["data"]]
    ids = [created(api.apply("FILTERA", "10.00", customer_id="alice"))["redemption_id"] for _ in range(3)]
    ids.append(created(api.apply("filterb", "10.00", customer_id="bob"))["redemption_id"])
    ids.append(created(api.apply(campaign_code, "10.00"))["redemption_id"])
    log = redemptions(api)
    assert [r["redemption_id"] for r in log] == ids

    assert [r["redemption_id"] for r in redemptions(api, code=" filtera ")] == ids[:3]
    assert [r["redemption_id"] for r in redemptions(api, customer_id="bob")] == ids[3:4]
    assert [r["redemption_id"] for r in redemptions(api, campaign_id=campaign["id"])] == ids[4:]
    assert redemptions(api, campaign_id=campaign["id"])[0]["campaign_id"] == campaign["id"]
    middle = log[1]["occurred_at"]
    assert [r["redemption_id"] for r in redemptions(api, **{"from": middle})] == ids[1:]
    assert [r["redemption_id"] for r in redemptions(api, to=middle)] == ids[:2]
    assert redemptions(api, code="NOSUCHCODE") == []

    pages: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/redemptions", params=params).json()
        pages.extend(r["redemption_id"] for r in page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == ids
    assert assert_validation_failed(api.get("/v1/redemptions", params={"cursor": "bm90LWEtY3Vyc29y"})) == {"cursor"}
    assert assert_validation_failed(api.get("/v1/redemptions", params={"from": "yesterday"})) == {"from"}
    assert assert_validation_failed(api.get("/v1/redemptions", params={"code": "no!"})) == {"code"}


# --- daily figures, with events written at chosen times ------------------------------------------------------

KOLKATA_MIDNIGHT = datetime(2031, 3, 1, 18, 30, tzinfo=UTC)  # 2031-03-02 00:00 in Asia/Kolkata (+05:30)
NEW_YORK_MIDNIGHT = datetime(2031, 3, 2, 5, 0, tzinfo=UTC)  # 2031-03-02 00:00 in America/New_York (EST)


class Clock:
    def __init__(self) -> None:
        self.now = KOLKATA_MIDNIGHT

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(e2e_database_url: str, clock: Clock) -> Iterator[CouponLedger]:
    """A ledger on the app's database whose events carry the test's times."""
    ledger = ledger_with_clock(eventsourcing_env(e2e_database_url, pool_size=2, max_overflow=2), clock)
    yield ledger
    ledger.close()


def redeem_around_midnights(api: Api, timed: CouponLedger, clock: Clock) -> None:
    retailer = api.retailer_id
    create_coupon(timed, retailer, "DAYONE", "fixed", D("10"))
    create_coupon(timed, retailer, "DAYTWO", "fixed", D("4"))
    clock.now = KOLKATA_MIDNIGHT - timedelta(minutes=10)  # Kolkata 1 March, New York 1 March
    first = apply(timed, retailer, "DAYONE", D("100.00"))
    clock.now = KOLKATA_MIDNIGHT + timedelta(minutes=10)  # Kolkata 2 March, New York 1 March
    apply(timed, retailer, "DAYONE", D("50.00"))
    clock.now = NEW_YORK_MIDNIGHT - timedelta(minutes=1)  # Kolkata 2 March, New York 1 March
    apply(timed, retailer, "DAYTWO", D("30.00"))
    clock.now = NEW_YORK_MIDNIGHT  # Kolkata 2 March, New York 2 March
    apply(timed, retailer, "DAYONE", D("25.00"))
    clock.now = datetime(2031, 3, 2, 19, 0, tzinfo=UTC)  # Kolkata 3 March 00:30, New York 2 March
    reverse(timed, retailer, first.redemption_id)


def row(day: str, key: dict[str, Any], uses: int, reversals: int, discount: str, revenue: str) -> dict[str, Any]:
    return {
        "day": day,
        **key,
        "redemptions": uses,
        "reversals": reversals,
        "discount_total": discount,
        "revenue_total": revenue,
    }


def test_daily_figures_match_hand_computed_ones_across_local_midnights(
    api: Api, other_api: Api, timed: CouponLedger, clock: Clock
) -> None:
    redeem_around_midnights(api, timed, clock)
    window = {"from": "2031-02-28", "to": "2031-03-04"}

    assert daily(api, **window, group_by="retailer", tz="Asia/Kolkata") == [
        row("2031-03-01", {}, 1, 0, "10.00", "90.00"),
        row("2031-03-02", {}, 3, 0, "24.00", "81.00"),  # 40 + 26 + 15 paid
        row("2031-03-03", {}, 0, 1, "-10.00", "-90.00"),
    ]
    assert daily(api, **window, group_by="coupon", tz="America/New_York") == [
        row("2031-03-01", {"code": "DAYONE"}, 2, 0, "20.00", "130.00"),
        row("2031-03-01", {"code": "DAYTWO"}, 1, 0, "4.00", "26.00"),
        row("2031-03-02", {"code": "DAYONE"}, 1, 1, "0.00", "-75.00"),  # 15 paid, 90 given back
    ]
    assert daily(api, **window, group_by="campaign") == [  # UTC
        row("2031-03-01", {"campaign_id": None}, 2, 0, "20.00", "130.00"),
        row("2031-03-02", {"campaign_id": None}, 2, 1, "4.00", "-49.00"),  # 26 + 15 - 90
    ]
    assert daily(api, **{"from": "2031-03-02", "to": "2031-03-02"}, group_by="retailer", tz="Asia/Kolkata") == [
        row("2031-03-02", {}, 3, 0, "24.00", "81.00")
    ]
    assert daily(other_api, **window, group_by="retailer", tz="Asia/Kolkata") == []


def test_daily_csv_parses_to_the_same_rows_as_the_json(api: Api, timed: CouponLedger, clock: Clock) -> None:
    redeem_around_midnights(api, timed, clock)
    for group_by in ("coupon", "campaign", "retailer"):
        params = {"from": "2031-03-01", "to": "2031-03-03", "group_by": group_by, "tz": "Asia/Kolkata"}
        response = api.get("/v1/analytics/daily", params={**params, "format": "csv"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        parsed = list(csv.DictReader(io.StringIO(response.text)))
        as_text = [{k: "" if v is None else str(v) for k, v in r.items()} for r in daily(api, **params)]
        assert parsed == as_text
        assert len(parsed) >= 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"tz": "Mars/Olympus_Mons"}, "tz"),
        ({"tz": "UTC+5"}, "tz"),
        ({"from": "2031-03-05", "to": "2031-03-04"}, "to"),
        ({"from": "2030-01-01", "to": "2031-01-02"}, "to"),
        ({"group_by": "customer"}, "group_by"),
        ({"from": "March"}, "from"),
        ({"format": "xml"}, "format"),
    ],
)
def test_a_bad_daily_query_is_a_validation_failure_naming_its_field(
    api: Api, params: dict[str, str], field: str
) -> None:
    query = {"from": "2031-03-01", "to": "2031-03-04", "group_by": "coupon", **params}
    assert assert_validation_failed(api.get("/v1/analytics/daily", params=query)) == {field}


def test_a_year_of_366_days_is_accepted(api: Api) -> None:
    assert daily(api, **{"from": "2032-01-01", "to": "2032-12-31"}, group_by="retailer") == []


# --- a campaign's results ---------------------------------------------------------------------------------


def test_a_campaigns_results_are_its_redemptions_net_of_reversals_and_its_budget_left(api: Api) -> None:
    template = {"discount_type": "fixed", "discount_value": "5"}
    budgeted = created(
        api.post(
            "/v1/campaigns",
            json={"name": "B", "prefix": "BUD-", "count": 3, "coupon": template, "max_discount_total": "12.00"},
        )
    )
    open_ended = created(
        api.post("/v1/campaigns", json={"name": "O", "prefix": "OPEN-", "count": 1, "coupon": template})
    )
    assert budgeted["results"] == {"redeemed": 0, "discount_given": "0.00", "budget_left": "12.00"}
    codes = [c["code"] for c in api.get(f"/v1/campaigns/{budgeted['id']}/coupons").json()["data"]]
    first = created(api.apply(codes[0], "50.00"))
    created(api.apply(codes[1], "50.00"))
    assert api.post(f"/v1/redemptions/{first['redemption_id']}/reverse").status_code == 200

    results = api.get(f"/v1/campaigns/{budgeted['id']}").json()["results"]

    assert results == {"redeemed": 1, "discount_given": "5.00", "budget_left": "7.00"}
    assert api.get(f"/v1/campaigns/{open_ended['id']}").json()["results"]["budget_left"] is None
    listed = {c["id"]: c["results"] for c in api.get("/v1/campaigns").json()["data"]}
    assert listed[budgeted["id"]] == results
