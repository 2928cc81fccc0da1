"""/v1/campaigns: generate codes in bulk under one template and one budget (Idempotency-Key
honoured, at most COUPON_LEDGER_MAX_CODES_PER_DAY codes per retailer and UTC day); list the
caller's campaigns; read a campaign and its codes (a page at a time, or every one of them as CSV)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.campaign_quota import charged
from api.deps import CallerDep
from api.errors import ApiError
from api.idempotency import IDEMPOTENCY_CONFLICTS, REPLAYED_RESPONSE_HEADER, Claim, IdempotencyDep, IdempotencyStore
from api.openapi import errors
from api.pagination import Cursor, decode_code_cursor, decode_time_cursor, encode_cursor, encode_time_cursor
from api.read_model import read_model, read_view
from api.schemas import CampaignCreate, CampaignPage, CampaignPublic, CouponPage, CouponPublic, in_template
from ledger.campaigns import CampaignPlan, campaign_id_for, create_campaign_async
from ledger.errors import CampaignNotFound, IdempotencyKeyReused, InvalidCoupon
from projections.campaigns import list_campaigns
from projections.coupons import CouponRow

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])

CampaignIdPath = Annotated[
    str,
    Path(
        description="The campaign's id. An id that cannot exist is CAMPAIGN_NOT_FOUND like a missing one.",
        json_schema_extra={"format": "uuid", "examples": ["3f2b8c1e-7d4a-4b9e-a1c2-5e6f7a8b9c0d"]},
    ),
]
NOT_FOUND = {404: ["CAMPAIGN_NOT_FOUND"]}
CSV_HEADER = "code,status,uses_count,max_uses\r\n"
CSV_ROWS_PER_CHUNK = 1_000  # rows sent as one piece of the streamed body
CAMPAIGN_LINKS = {
    name: {"operationId": operation, "parameters": {"campaign_id": "$response.body#/id"}, "description": description}
    for name, operation, description in [
        ("GetCampaign", "get_campaign", "The campaign just created."),
        ("CampaignCoupons", "campaign_coupons", "Its codes."),
    ]
}


def campaign_id_of(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise CampaignNotFound(f"Campaign {raw} does not exist.", campaign_id=raw) from None


@router.post(
    "",
    status_code=201,
    response_model=CampaignPublic,
    responses={
        201: {
            "description": "The campaign, its codes all generated",
            "links": CAMPAIGN_LINKS,
            "headers": REPLAYED_RESPONSE_HEADER,
        },
        **errors({409: IDEMPOTENCY_CONFLICTS, 429: ["RATE_LIMITED"], 503: ["SERVICE_UNAVAILABLE"]}),
    },
)
async def create_campaign(body: CampaignCreate, caller: CallerDep, idempotency: IdempotencyDep) -> Response:
    """Generate ``count`` codes (prefix + 6 random characters of A-Z and 2-9 without look-alikes:
    no 0/O, 1/I/L), each a coupon with the template's terms, and the campaign-wide limits every
    redemption of them is checked against. Answers once every code is stored: 100,000 codes take
    seconds, written in chunks that give way to other requests (`coupon-ledger campaign create`
    does the same with a progress bar).

    A retailer generates at most COUPON_LEDGER_MAX_CODES_PER_DAY codes per UTC day: a campaign that
    would pass it is refused with 429 RATE_LIMITED before any code is made (Retry-After: the seconds
    left in the day; details `limit`, `used`, `requested`). With an Idempotency-Key, a retry replays
    the first response (Idempotent-Replayed: true) and never makes a second campaign."""
    services = caller.services
    key = idempotency.key

    async def run(claim: Claim | None) -> Response:
        try:
            plan = CampaignPlan(
                caller.retailer_id,
                body.name,
                body.prefix,
                body.count,
                body.coupon.terms(),
                body.max_redemptions,
                body.max_discount_total,
                campaign_id=campaign_id_for(caller.retailer_id, key) if key is not None else None,
            )
            campaign = await create_campaign_async(
                services.ledger,
                plan,
                progress=LeaseKeeper(services.idempotency, claim) if claim is not None else None,
                starting=charged(services.settings.max_codes_per_day),
            )
        except InvalidCoupon as error:
            raise in_template(error) from None
        except IdempotencyKeyReused as error:  # the key's campaign, taken over, has other terms
            raise ApiError("IDEMPOTENCY_KEY_REUSED", error.message, idempotency_key=key) from None
        content = CampaignPublic.from_campaign(campaign).model_dump(mode="json")
        return JSONResponse(content, status_code=201)

    return await idempotency.run(caller.retailer_id, run)


class LeaseKeeper:
    """Keeps a long campaign's Idempotency-Key claimed while its chunks are written: the lease is
    renewed once a third of it has passed, so a retry waits for this request rather than take the
    key over and generate the codes twice."""

    def __init__(self, store: IdempotencyStore, claim: Claim) -> None:
        self.store = store
        self.claim = claim
        self.renewed = time.monotonic()

    async def __call__(self, generated: int) -> None:
        if time.monotonic() - self.renewed >= self.store.lease_seconds / 3:
            await run_in_threadpool(self.store.renew, self.claim)
            self.renewed = time.monotonic()


@router.get("", responses=errors({503: ["SERVICE_UNAVAILABLE"]}))
def list_campaigns_route(
    caller: CallerDep, limit: Annotated[int, Query(ge=1, le=100)] = 20, cursor: Cursor = None
) -> CampaignPage:
    """The caller's campaigns, newest first, each as GET /v1/campaigns/{id} answers it; a page at a
    time (pass next_cursor as cursor). Reflects every campaign started before the request."""
    services = caller.services
    after = decode_time_cursor(cursor) if cursor else None
    rows = read_model(
        services, "Campaigns", lambda view: list_campaigns(view.datastore, caller.retailer_id, after, limit + 1)
    )
    page = rows[:limit]
    next_cursor = encode_time_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    data = [CampaignPublic.from_campaign(services.ledger.get_campaign(caller.retailer_id, r.id)) for r in page]
    return CampaignPage(data=data, next_cursor=next_cursor)


@router.get("/{campaign_id}", responses=errors(NOT_FOUND))
def get_campaign(campaign_id: CampaignIdPath, caller: CallerDep) -> CampaignPublic:
    campaign = caller.services.ledger.get_campaign(caller.retailer_id, campaign_id_of(campaign_id))
    return CampaignPublic.from_campaign(campaign)


CSV_EXAMPLE = CSV_HEADER + "SPRING-7KQ2XM,active,0,1\r\nSPRING-A9HT3P,count_expired,1,1\r\n"


@router.get(
    "/{campaign_id}/coupons",
    response_model=None,
    responses={
        200: {
            "model": CouponPage,
            "description": "A page of the campaign's coupons in code order; with format=csv, every one of them.",
            "content": {
                "text/csv": {
                    "schema": {"type": "string", "description": "A header line, then code,status,uses_count,max_uses."},
                    "example": CSV_EXAMPLE,
                }
            },
        },
        **errors({**NOT_FOUND, 503: ["SERVICE_UNAVAILABLE"]}),
    },
)
def campaign_coupons(
    campaign_id: CampaignIdPath,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
    format_: Annotated[
        Literal["json", "csv"],
        Query(
            alias="format",
            description="json: a page (limit, cursor); csv: every code, streamed (limit and cursor do not apply).",
        ),
    ] = "json",
) -> Response:
    services = caller.services
    campaign = services.ledger.get_campaign(caller.retailer_id, campaign_id_of(campaign_id))
    after = decode_code_cursor(cursor) if cursor else None
    now = services.ledger.clock()
    if format_ == "csv":
        rows = read_view(services, "The campaign's coupons").campaign_coupons(caller.retailer_id, campaign.id, now)
        return StreamingResponse(
            csv_chunks(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="campaign-{campaign.id}.csv"'},
        )
    found = read_model(
        services,
        "The campaign's coupons",
        lambda view: view.list_coupons(
            caller.retailer_id, now=now, status=None, after_code=after, limit=limit + 1, campaign_id=campaign.id
        ),
    )
    page = found[:limit]
    next_cursor = encode_cursor(page[-1].code) if len(found) > limit else None
    content = CouponPage(data=[CouponPublic.from_row(r) for r in page], next_cursor=next_cursor)
    return JSONResponse(content.model_dump(mode="json"))


def csv_chunks(rows: Iterable[CouponRow]) -> Iterator[str]:
    """The CSV text in pieces of CSV_ROWS_PER_CHUNK rows: the response streams as the read model
    is read, and each piece costs one hop to the thread pool, not one per row. Codes and statuses
    hold no comma or quote, so no field needs quoting."""
    lines: list[str] = [CSV_HEADER]
    for row in rows:
        max_uses: Any = "" if row.max_uses is None else row.max_uses
        lines.append(f"{row.code},{row.status},{row.uses_count},{max_uses}\r\n")
        if len(lines) >= CSV_ROWS_PER_CHUNK:
            yield "".join(lines)
            lines = []
    if lines:
        yield "".join(lines)
