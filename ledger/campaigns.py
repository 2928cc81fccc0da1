"""Generating a campaign's codes: a StartCampaign command, then one GenerateCodes per chunk.

Each chunk draws its codes at random (prefix + 6 characters without look-alikes), all distinct from
each other and from the campaign's earlier ones; a code that already exists (the deterministic
coupon id finds it) is drawn again. Every chunk is one command, saved with whatever else the writer
has in hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from ledger.commands import Command, GenerateCodes, StartCampaign
from ledger.domain import Campaign, generate_code, normalize_prefix
from ledger.errors import InvalidCoupon
from ledger.handlers import coupon_fields

if TYPE_CHECKING:
    from ledger.application import CouponLedger

MAX_CAMPAIGN_CODES = 100_000
CAMPAIGN_CHUNK = 1_000


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
    ) -> None:
        if not 1 <= count <= MAX_CAMPAIGN_CODES:
            raise InvalidCoupon("count", f"must be 1 to {MAX_CAMPAIGN_CODES}")
        if max_redemptions is not None and max_redemptions < 1:
            raise InvalidCoupon("max_redemptions", "must be at least 1")
        if max_discount_total is not None and max_discount_total <= 0:
            raise InvalidCoupon("max_discount_total", "must be greater than 0")
        self.retailer_id = retailer_id
        self.campaign_id = uuid4()
        self.name = name
        self.prefix = normalize_prefix(prefix)
        self.count = count
        self.template = coupon_fields(template)
        self.max_redemptions = max_redemptions
        self.max_discount_total = max_discount_total
        self.chunk = chunk or CAMPAIGN_CHUNK
        self._drawn: set[str] = set()

    def commands(self) -> Iterator[Command[Campaign]]:
        """The campaign's commands, in order: each chunk's codes are drawn only when it is asked for."""
        yield StartCampaign(
            self.campaign_id,
            self.retailer_id,
            self.name,
            self.prefix,
            self.count,
            self.template,
            self.max_redemptions,
            self.max_discount_total,
        )
        full, rest = divmod(self.count, self.chunk)
        for size in [self.chunk] * full + ([rest] if rest else []):
            codes = [self._draw() for _ in range(size)]
            yield GenerateCodes(self.retailer_id, self.campaign_id, codes, self.template, draw=self._draw)

    def _draw(self) -> str:
        while True:
            code = generate_code(self.prefix)
            if code not in self._drawn:
                self._drawn.add(code)
                return code


def create_campaign(
    ledger: CouponLedger, plan: CampaignPlan, progress: Callable[[int], None] | None = None
) -> Campaign:
    """Run the plan's commands one after another; ``progress(n)`` after each chunk of n codes."""
    campaign: Campaign | None = None
    for command in plan.commands():
        before = campaign.generated if campaign is not None else 0
        campaign = ledger.execute(command)
        if progress is not None and isinstance(command, GenerateCodes):
            progress(campaign.generated - before)
    assert campaign is not None
    return campaign


async def create_campaign_async(ledger: CouponLedger, plan: CampaignPlan) -> Campaign:
    campaign: Campaign | None = None
    for command in plan.commands():
        campaign = await ledger.execute_async(command)
    assert campaign is not None
    return campaign
