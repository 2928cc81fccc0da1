"""`coupon-ledger campaign create`: a campaign checked as POST /v1/campaigns checks it, its codes
generated with a progress bar."""

from __future__ import annotations

import argparse
import json
import sys
import time

from pydantic import ValidationError
from tqdm import tqdm

from api.campaign_quota import charged
from api.commands.retailer import retailers_of
from api.database import eventsourcing_env, open_ledger
from api.errors import ApiError, validation_errors
from api.retailers import RetailerNotFound
from api.schemas import CampaignCreate, in_template
from api.settings import Settings
from ledger.campaigns import CampaignPlan, create_campaign
from ledger.errors import InvalidCoupon

CAMPAIGN_CREATE = "coupon-ledger campaign create"
# The option of each top-level field of a campaign (the template's fields are inside --coupon).
CAMPAIGN_OPTIONS = {
    "name": "--name",
    "prefix": "--prefix",
    "count": "--count",
    "coupon": "--coupon",
    "max_redemptions": "--max-redemptions",
    "max_discount_total": "--max-discount-total",
}


def cmd_campaign_create(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the campaign as POST /v1/campaigns does (before touching the database), then
    generate its codes with a progress bar on stderr and print one JSON line."""
    request = campaign_request(args)
    if isinstance(request, list):
        return refuse_campaign(request)
    with retailers_of(settings) as (url, retailers):
        try:
            retailer_id = retailers.named(args.retailer)
        except RetailerNotFound as missing:
            print(f"{CAMPAIGN_CREATE}: error: {missing}", file=sys.stderr)
            return 1
        ledger = open_ledger(eventsourcing_env(url, pool_size=2, max_overflow=2))
        try:
            started = time.perf_counter()
            with tqdm(total=request.count, unit="code", file=sys.stderr, desc="codes", dynamic_ncols=True) as bar:

                def advance(generated: int) -> None:
                    bar.update(generated)

                plan = CampaignPlan(
                    retailer_id,
                    request.name,
                    request.prefix,
                    request.count,
                    request.coupon.terms(),
                    request.max_redemptions,
                    request.max_discount_total,
                )
                campaign = create_campaign(ledger, plan, progress=advance, starting=charged(settings.max_codes_per_day))
            seconds = time.perf_counter() - started
        except InvalidCoupon as refused:  # a rule tying the template's terms together
            return refuse_campaign(in_template(refused).details["errors"])
        except ApiError as refused:  # past the day's codes (COUPON_LEDGER_MAX_CODES_PER_DAY)
            print(f"{CAMPAIGN_CREATE}: error: {refused.message} {json.dumps(refused.details)}", file=sys.stderr)
            return 1
        finally:
            ledger.close()
    print(json.dumps({"campaign_id": str(campaign.id), "generated": campaign.generated, "seconds": round(seconds, 2)}))
    return 0


def campaign_request(args: argparse.Namespace) -> CampaignCreate | list[dict[str, str]]:
    """The campaign the options describe, checked by the HTTP API's model; else its errors."""
    try:
        template = json.loads(args.coupon)
    except json.JSONDecodeError as error:
        return [{"field": "coupon", "message": f"is not valid JSON ({error})"}]
    body = {"name": args.name, "prefix": args.prefix, "count": args.count, "coupon": template}
    if args.max_redemptions is not None:
        body["max_redemptions"] = args.max_redemptions
    if args.max_discount_total is not None:
        body["max_discount_total"] = args.max_discount_total
    try:
        return CampaignCreate.model_validate(body)
    except ValidationError as error:
        return validation_errors(error.errors())


def refuse_campaign(errors: list[dict[str, str]]) -> int:
    for error in errors:
        top, _, inner = error["field"].partition(".")
        where = CAMPAIGN_OPTIONS.get(top, top) + (f" {inner}" if inner else "")
        print(f"{CAMPAIGN_CREATE}: error: {where}: {error['message']}", file=sys.stderr)
    return 2
