"""Generating a campaign's codes: a StartCampaign command, then one GenerateCodes per chunk.

Each chunk draws its codes at random (prefix + 6 characters without look-alikes), all distinct from
each other and from the campaign's earlier ones; a code that already exists (the deterministic
coupon id finds it) is drawn again. Every chunk is one command in the writer's background lane:
it is written when no live command (an apply, a reserve) is waiting, so a live command waits
behind one chunk at most (CAMPAIGN_CHUNK codes; measured with bench/neighbours.py, see README).

A campaign whose id is given (derived from an Idempotency-Key) and already stored is resumed: a
retry after its first run died mid-way generates only the codes still missing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from ledger.commands import Command, GenerateCodes, StartCampaign
from ledger.domain import Campaign, generate_code, normalize_prefix
from ledger.errors import CampaignNotFound, IdempotencyKeyReused, InvalidCoupon
from ledger.handlers import coupon_fields

if TYPE_CHECKING:
    from ledger.application import CouponLedger

MAX_CAMPAIGN_CODES = 100_000
CAMPAIGN_CHUNK = 100
# After each chunk the campaign pauses this many times as long as the chunk took: the CPU (and the
# projection, and the database) go to live traffic meanwhile. Measured with bench/neighbours.py.
CAMPAIGN_PAUSE = 1.0
CAMPAIGN_KEYS = uuid5(NAMESPACE_URL, "https://cartly.example/coupon-ledger/campaign-keys")
Starting = Callable[[StartCampaign], Command[Campaign]]


def campaign_id_for(retailer_id: UUID, idempotency_key: str) -> UUID:
    """The id of the campaign a retailer creates under this Idempotency-Key: a second start of it
    is the same campaign."""
    return uuid5(CAMPAIGN_KEYS, f"campaign/{retailer_id}/{idempotency_key}")


class CampaignPlan:
    def __init__(
        self,
        retailer_id: UUID,
        name: str,
        prefix: str,
        count: int,
        template: Mapping[str, Any],
        max_redemptions: int | None = None,
        max_discount_total: Decimal | None = None,
        chunk: int | None = None,
        campaign_id: UUID | None = None,
    ) -> None:
        if not 1 <= count <= MAX_CAMPAIGN_CODES:
            raise InvalidCoupon("count", f"must be 1 to {MAX_CAMPAIGN_CODES}")
        if max_redemptions is not None and max_redemptions < 1:
            raise InvalidCoupon("max_redemptions", "must be at least 1")
        if max_discount_total is not None and max_discount_total <= 0:
            raise InvalidCoupon("max_discount_total", "must be greater than 0")
        self.retailer_id = retailer_id
        self.campaign_id = campaign_id or uuid4()
        self.name = name
        self.prefix = normalize_prefix(prefix)
        self.count = count
        self.template = coupon_fields(template)
        self.max_redemptions = max_redemptions
        self.max_discount_total = max_discount_total
        self.chunk = chunk or CAMPAIGN_CHUNK
        self._drawn: set[str] = set()

    def commands(self, generated: int = 0) -> Iterator[Command[Campaign]]:
        """The campaign's commands, in order: each chunk's codes are drawn only when it is asked for.
        With ``generated`` codes already stored, only the chunks of the rest (no StartCampaign)."""
        if not generated:
            yield self.start()
        full, rest = divmod(self.count - generated, self.chunk)
        for size in [self.chunk] * full + ([rest] if rest else []):
            codes = [self._draw() for _ in range(size)]
            yield GenerateCodes(self.retailer_id, self.campaign_id, codes, self.template, draw=self._draw)

    def start(self) -> StartCampaign:
        return StartCampaign(
            self.campaign_id,
            self.retailer_id,
            self.name,
            self.prefix,
            self.count,
            self.template,
            self.max_redemptions,
            self.max_discount_total,
        )

    def check_same(self, campaign: Campaign) -> None:
        """Refuse to resume a stored campaign with other terms than this plan's."""
        stored = (
            campaign.name,
            campaign.prefix,
            campaign.count,
            dict(campaign.template),
            campaign.max_redemptions,
            campaign.max_discount_total,
        )
        planned = (
            self.name,
            self.prefix,
            self.count,
            dict(self.template),
            self.max_redemptions,
            self.max_discount_total,
        )
        if stored != planned:
            raise IdempotencyKeyReused(
                "This Idempotency-Key already started a campaign with other terms.", campaign_id=str(campaign.id)
            )

    def _draw(self) -> str:
        while True:
            code = generate_code(self.prefix)
            if code not in self._drawn:
                self._drawn.add(code)
                return code


def create_campaign(
    ledger: CouponLedger,
    plan: CampaignPlan,
    progress: Callable[[int], None] | None = None,
    starting: Starting | None = None,
    pause: float = CAMPAIGN_PAUSE,
) -> Campaign:
    """Run the plan's commands one after another (resuming a stored campaign of the plan's id),
    pausing ``pause`` times each chunk's time after it; ``progress(n)`` after each chunk of n codes.
    ``starting(command)``: what to execute in place of the StartCampaign (e.g. with work in its
    transaction)."""
    campaign = stored(ledger, plan)
    for command in plan.commands(campaign.generated if campaign is not None else 0):
        if isinstance(command, StartCampaign):
            campaign = ledger.execute(starting(command) if starting is not None else command)
            continue
        before = campaign.generated if campaign is not None else 0
        started = time.perf_counter()
        campaign = ledger.execute(command, background=True)
        if progress is not None:
            progress(campaign.generated - before)
        time.sleep((time.perf_counter() - started) * pause)
    assert campaign is not None
    return campaign


async def create_campaign_async(
    ledger: CouponLedger,
    plan: CampaignPlan,
    progress: Callable[[int], Awaitable[None]] | None = None,
    starting: Starting | None = None,
    pause: float = CAMPAIGN_PAUSE,
) -> Campaign:
    """The same, awaited (the HTTP API), pausing ``pause`` times each chunk's time after it."""
    campaign = await asyncio.to_thread(stored, ledger, plan)
    for command in plan.commands(campaign.generated if campaign is not None else 0):
        if isinstance(command, StartCampaign):
            campaign = await ledger.execute_async(starting(command) if starting is not None else command)
            continue
        before = campaign.generated if campaign is not None else 0
        started = time.perf_counter()
        campaign = await ledger.execute_async(command, background=True)
        if progress is not None:
            await progress(campaign.generated - before)
        await asyncio.sleep((time.perf_counter() - started) * pause)
    assert campaign is not None
    return campaign


def stored(ledger: CouponLedger, plan: CampaignPlan) -> Campaign | None:
    """The campaign of the plan's id if it is already stored (checked to have the plan's terms)."""
    try:
        campaign = ledger.get_campaign(plan.retailer_id, plan.campaign_id)
    except CampaignNotFound:
        return None
    plan.check_same(campaign)
    return campaign
