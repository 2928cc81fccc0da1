"""`coupon-ledger campaign create`: codes generated in bulk from the command line, checked by the
HTTP API's own model, with a progress bar on stderr and one JSON line on stdout."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
import pytest

from api.database import open_ledger
from api.settings import Settings
from ledger.campaigns import CAMPAIGN_CHUNK
from ledger.domain import GENERATED_ALPHABET, GENERATED_LENGTH
from projections.coupons import construct_view
from tests.support.postgres import project_to_head, run_cli, scalar

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"
TEMPLATE = '{"discount_type": "fixed", "discount_value": "5", "max_uses": 1, "scope": {"category_ids": [7]}}'
CAMPAIGN_TOPICS = "%:Campaign.%"


def create_retailer(url: str, name: str) -> UUID:
    created = run_cli(url, "retailer", "create", name)
    assert created.returncode == 0, created.stderr
    return UUID(json.loads(created.stdout.strip().splitlines()[-1])["retailer_id"])


def campaign_create(url: str, *options: str, retailer: str = "Campaign shop", timeout: float = 120.0) -> Any:
    return run_cli(url, "campaign", "create", "--retailer", retailer, *options, timeout=timeout)


def test_a_campaign_is_generated_with_a_progress_bar_and_reported_on_one_json_line(
    database_url: str, env: dict[str, str]
) -> None:
    retailer_id = create_retailer(database_url, "Campaign shop")
    count = 2 * CAMPAIGN_CHUNK + 500  # three saves, the last one partial
    done = campaign_create(
        database_url,
        *("--name", "Autumn mailing", "--prefix", " fall-", "--count", str(count), "--coupon", TEMPLATE),
        *("--max-redemptions", "300", "--max-discount-total", "1000.5"),
        retailer=" campaign SHOP ",  # the name as `retailer create` compares it
    )
    assert done.returncode == 0, done.stderr

    (line,) = done.stdout.splitlines()
    report = json.loads(line)
    assert set(report) == {"campaign_id", "generated", "seconds"}
    assert report["generated"] == count
    assert isinstance(report["seconds"], float) and report["seconds"] >= 0
    assert f"{count}/{count}" in done.stderr and "100%" in done.stderr  # tqdm's bar, finished

    ledger = open_ledger(env)
    try:
        campaign = ledger.get_campaign(retailer_id, UUID(report["campaign_id"]))
    finally:
        ledger.close()
    assert (campaign.name, campaign.prefix) == ("Autumn mailing", "FALL-")
    assert campaign.count == campaign.generated == count
    assert (campaign.max_redemptions, campaign.max_discount_total) == (300, Decimal("1000.50"))
    assert campaign.template["discount_type"] == "fixed"
    assert campaign.template["discount_value"] == Decimal("5.00")
    assert campaign.template["max_uses"] == 1
    assert campaign.template["scope"] == {"category_ids": ["7"]}

    project_to_head(env, database_url)
    view = construct_view(env)
    try:
        rows = list(view.campaign_coupons(retailer_id, campaign.id, datetime.now(UTC), page_size=1000))
    finally:
        view.datastore.close()
    codes = [row.code for row in rows]
    assert len(codes) == len(set(codes)) == count
    assert all(re.fullmatch(f"FALL-[{GENERATED_ALPHABET}]{{{GENERATED_LENGTH}}}", code) for code in codes)
    assert {(row.discount_type, row.discount_value, row.max_uses, row.campaign_id) for row in rows} == {
        ("fixed", Decimal("5.00"), 1, campaign.id)
    }


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (("--count", "0"), "--count: Input should be greater than or equal to 1"),
        (("--count", "100001"), "--count: Input should be less than or equal to 100000"),
        (("--prefix", "NO SPACES"), "--prefix: must be 0-44 characters"),
        (("--prefix", "P" * 45), "--prefix: must be 0-44 characters"),
        (("--name", ""), "--name: String should have at least 1 character"),
        (("--coupon", "{not json"), "--coupon: is not valid JSON"),
        (("--coupon", "[1]"), "--coupon: Input should be a valid dictionary"),
        (("--coupon", '{"discount_type": "percentage"}'), "--coupon discount_value: is required for a percentage"),
        (("--coupon", '{"discount_type": "fixed", "discount_value": 5, "code": "X"}'), "--coupon code: Extra inputs"),
        (("--max-redemptions", "0"), "--max-redemptions: Input should be greater than or equal to 1"),
        (("--max-discount-total", "0"), "--max-discount-total: must be greater than 0"),
        (("--max-discount-total", "1.001"), "--max-discount-total:"),
    ],
)
def test_a_campaign_the_api_would_refuse_exits_2_naming_the_option_before_any_database_is_touched(
    options: tuple[str, ...], expected: str
) -> None:
    valid = {"--name": "Spring", "--prefix": "SPRING-", "--count": "10", "--coupon": TEMPLATE}
    given = dict(zip(options[::2], options[1::2], strict=True))
    arguments = [part for option, value in {**valid, **given}.items() for part in (option, value)]
    refused = campaign_create(UNREACHABLE, *arguments)
    assert refused.returncode == 2, refused.stderr
    assert f"coupon-ledger campaign create: error: {expected}" in refused.stderr
    assert refused.stdout == ""


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{"discount_type": "fixed", "discount_value": 5, "max_discount_amount": 2}', "--coupon max_discount_amount:"),
        ('{"discount_type": "percentage", "discount_value": 120}', "--coupon discount_value:"),
        (
            '{"discount_type": "fixed", "discount_value": 5, "starts_at": "2027-02-01", "expires_at": "2027-01-01"}',
            "--coupon expires_at: must be later than starts_at",
        ),
    ],
)
def test_terms_the_ledger_refuses_exit_2_naming_the_field_and_create_nothing(
    database_url: str, template: str, expected: str
) -> None:
    create_retailer(database_url, "Campaign shop")
    refused = campaign_create(database_url, "--name", "Capped", "--prefix", "C", "--count", "5", "--coupon", template)
    assert refused.returncode == 2
    assert f"coupon-ledger campaign create: error: {expected}" in refused.stderr
    assert refused.stdout == ""
    assert scalar(database_url, "SELECT count(*) FROM ledger_events WHERE topic LIKE %s", (CAMPAIGN_TOPICS,)) == 0


def test_a_retailer_that_does_not_exist_exits_1_and_creates_nothing(database_url: str) -> None:
    refused = campaign_create(
        database_url, "--name", "Lost", "--prefix", "L", "--count", "5", "--coupon", TEMPLATE, retailer="nobody"
    )
    assert refused.returncode == 1
    assert "error: no retailer is named 'nobody'" in refused.stderr
    assert refused.stdout == ""
    assert scalar(database_url, "SELECT count(*) FROM ledger_events") == 0


def test_a_campaign_past_the_retailers_codes_for_the_day_exits_1_and_creates_nothing(database_url: str) -> None:
    retailer_id = create_retailer(database_url, "Campaign shop")
    with psycopg.connect(database_url) as conn:  # the API's campaigns of today, in the shared counter
        conn.execute(
            "INSERT INTO campaign_codes_daily VALUES (%s, (now() AT TIME ZONE 'UTC')::date, %s)",
            (retailer_id, Settings().max_codes_per_day - 4),
        )
    refused = campaign_create(database_url, "--name", "Late", "--prefix", "L", "--count", "5", "--coupon", TEMPLATE)
    assert refused.returncode == 1, refused.stderr
    assert "past the limit of" in refused.stderr and '"requested": 5' in refused.stderr
    assert refused.stdout == ""
    assert scalar(database_url, "SELECT count(*) FROM ledger_events WHERE topic LIKE %s", (CAMPAIGN_TOPICS,)) == 0

    done = campaign_create(database_url, "--name", "Fits", "--prefix", "F", "--count", "4", "--coupon", TEMPLATE)
    assert done.returncode == 0, done.stderr
