"""What a retailer's systems are told: the webhook events a run of the log makes.

Each kind comes from one event of the log, in its coupon's (or campaign's) stream:

- ``coupon.created`` / ``coupon.deactivated``: Coupon.Created / Coupon.Deactivated;
- ``redemption.created``: Coupon.Redeemed (every use: apply, the confirm of a hold, checkout);
- ``coupon.exhausted``: the Coupon.Redeemed that brought its uses to ``max_uses``;
- ``redemption.reversed``: Coupon.RedemptionReversed;
- ``hold.expired``: Coupon.ReservationExpired;
- ``campaign.budget_exhausted``: the Campaign.Used that brought the campaign to ``max_redemptions``
  or ``max_discount_total``.

To tell when a use exhausts a coupon or a campaign, `WebhookEvents` keeps the little it needs of
each (`CouponState`, `CampaignState`), carried from batch to batch in tables of the projection's own.
The body of a webhook event is fixed when it is made: ``{id, type, created_at, data}``, where
``id`` depends only on the source event and the kind (stable across retries and replays) and
``data`` is the source event's served form (amounts as strings) with the coupon's code, its id and
the log ``position`` of the source event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

from ledger.domain import NAMESPACE, Campaign, Coupon
from ledger.served_events import jsonable, served_event
from ledger.timestamps import format_timestamp

COUPON_CREATED = "coupon.created"
COUPON_DEACTIVATED = "coupon.deactivated"
COUPON_EXHAUSTED = "coupon.exhausted"
REDEMPTION_CREATED = "redemption.created"
REDEMPTION_REVERSED = "redemption.reversed"
HOLD_EXPIRED = "hold.expired"
CAMPAIGN_BUDGET_EXHAUSTED = "campaign.budget_exhausted"

EVENT_KINDS = (
    COUPON_CREATED,
    COUPON_DEACTIVATED,
    COUPON_EXHAUSTED,
    REDEMPTION_CREATED,
    REDEMPTION_REVERSED,
    HOLD_EXPIRED,
    CAMPAIGN_BUDGET_EXHAUSTED,
)

# The log's events that can make a webhook event or change what WebhookEvents keeps.
COUPON_EVENTS: tuple[type[Any], ...] = (
    Coupon.Created,
    Coupon.Updated,
    Coupon.Deactivated,
    Coupon.Redeemed,
    Coupon.RedemptionReversed,
    Coupon.ReservationExpired,
)
CAMPAIGN_EVENTS: tuple[type[Any], ...] = (Campaign.Created, Campaign.Used, Campaign.Returned)

_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@dataclass
class CouponState:
    coupon_id: UUID
    retailer_id: UUID
    code: str
    campaign_id: UUID | None
    max_uses: int | None
    uses: int


@dataclass
class CampaignState:
    campaign_id: UUID
    retailer_id: UUID
    name: str
    max_redemptions: int | None
    max_discount_total: Decimal | None
    redemptions: int
    discount_total: Decimal

    def is_exhausted(self) -> bool:
        """As Campaign.check_budget_left sees it (live holds aside)."""
        return (self.max_redemptions is not None and self.redemptions >= self.max_redemptions) or (
            self.max_discount_total is not None and self.discount_total >= self.max_discount_total
        )


@dataclass(frozen=True)
class WebhookEvent:
    """One webhook event, before it is matched with the endpoints that asked for its kind."""

    event_id: str
    kind: str
    retailer_id: UUID
    subject_id: UUID
    position: int
    ordinal: int
    body: str


def webhook_event_id(originator_id: UUID, originator_version: int, kind: str) -> str:
    """The id of the webhook event of ``kind`` made from one event of the log: the same every time."""
    return "evt_" + uuid5(NAMESPACE, f"webhook/{originator_id}/{originator_version}/{kind}").hex


# Whether any endpoint asked for a kind of a retailer's events at a position: if none did, the
# webhook event is not made (the state is kept all the same).
Wanted = Callable[[UUID, str, int], bool]


class WebhookEvents:
    """Turns events of the log, in log order, into webhook events, keeping the state of the
    coupons and campaigns they touch. ``coupons`` and ``campaigns`` start with what the tables
    hold of those the run touches; ``changed_*`` name the ones to write back."""

    def __init__(
        self,
        coupons: dict[UUID, CouponState],
        campaigns: dict[UUID, CampaignState],
        wanted: Wanted = lambda retailer_id, kind, position: True,
    ) -> None:
        self.coupons = coupons
        self.campaigns = campaigns
        self.wanted = wanted
        self.changed_coupons: set[UUID] = set()
        self.changed_campaigns: set[UUID] = set()

    def of(self, event: Any, position: int) -> list[WebhookEvent]:
        """The webhook events of one event of the log at ``position`` that some endpoint wants."""
        if isinstance(event, COUPON_EVENTS):
            return self._of_coupon_event(event, position)
        if isinstance(event, CAMPAIGN_EVENTS):
            return self._of_campaign_event(event, position)
        return []

    def _of_coupon_event(self, event: Any, position: int) -> list[WebhookEvent]:
        coupon_id = event.originator_id
        if isinstance(event, Coupon.Created):
            self.coupons[coupon_id] = CouponState(
                coupon_id, event.retailer_id, event.code, event.campaign_id, event.max_uses, 0
            )
            self.changed_coupons.add(coupon_id)
            return self._coupon_event(COUPON_CREATED, event, position, 0)
        state = self.coupons.get(coupon_id)
        if state is None:  # an event of a coupon whose creation is not in the log: nothing to say
            return []
        if isinstance(event, Coupon.Updated):
            if "max_uses" in event.changes:
                state.max_uses = event.changes["max_uses"]
                self.changed_coupons.add(coupon_id)
            return []
        if isinstance(event, Coupon.Deactivated):
            return self._coupon_event(COUPON_DEACTIVATED, event, position, 0)
        if isinstance(event, Coupon.RedemptionReversed):
            state.uses -= 1
            self.changed_coupons.add(coupon_id)
            return self._coupon_event(REDEMPTION_REVERSED, event, position, 0)
        if isinstance(event, Coupon.ReservationExpired):
            return self._coupon_event(HOLD_EXPIRED, event, position, 0)
        assert isinstance(event, Coupon.Redeemed)
        state.uses += 1
        self.changed_coupons.add(coupon_id)
        made = self._coupon_event(REDEMPTION_CREATED, event, position, 0)
        if state.max_uses is not None and state.uses == state.max_uses:
            made.extend(
                self._coupon_event(
                    COUPON_EXHAUSTED,
                    event,
                    position,
                    1,
                    {"redemption_id": str(event.redemption_id), "max_uses": state.max_uses, "uses_count": state.uses},
                )
            )
        return made

    def _of_campaign_event(self, event: Any, position: int) -> list[WebhookEvent]:
        campaign_id = event.originator_id
        if isinstance(event, Campaign.Created):
            self.campaigns[campaign_id] = CampaignState(
                campaign_id,
                event.retailer_id,
                event.name,
                event.max_redemptions,
                event.max_discount_total,
                0,
                Decimal(0),
            )
            self.changed_campaigns.add(campaign_id)
            return []
        state = self.campaigns.get(campaign_id)
        if state is None:
            return []
        self.changed_campaigns.add(campaign_id)
        if isinstance(event, Campaign.Returned):
            state.redemptions -= 1
            state.discount_total -= event.discount_amount
            return []
        assert isinstance(event, Campaign.Used)
        was_exhausted = state.is_exhausted()
        state.redemptions += 1
        state.discount_total += event.discount_amount
        if was_exhausted or not state.is_exhausted():
            return []
        if not self.wanted(state.retailer_id, CAMPAIGN_BUDGET_EXHAUSTED, position):
            return []
        data = {
            "campaign_id": str(campaign_id),
            "name": state.name,
            "redemption_id": str(event.redemption_id),
            "max_redemptions": state.max_redemptions,
            "max_discount_total": jsonable(state.max_discount_total),
            "redemptions": state.redemptions,
            "discount_total": jsonable(state.discount_total),
            "position": position,
        }
        return [self._make(CAMPAIGN_BUDGET_EXHAUSTED, event, state.retailer_id, campaign_id, position, 0, data)]

    def _coupon_event(
        self, kind: str, event: Any, position: int, ordinal: int, data: dict[str, Any] | None = None
    ) -> list[WebhookEvent]:
        """The webhook event of ``kind``, if an endpoint wants it (else none: its body is not made)."""
        state = self.coupons[event.originator_id]
        if not self.wanted(state.retailer_id, kind, position):
            return []
        if data is None:
            data = served_event(event)["data"]
            data.pop("retailer_id", None)
        full = {
            "code": state.code,
            "coupon_id": str(state.coupon_id),
            "campaign_id": jsonable(state.campaign_id),
            **data,
            "position": position,
        }
        return [self._make(kind, event, state.retailer_id, state.coupon_id, position, ordinal, full)]

    @staticmethod
    def _make(
        kind: str,
        event: Any,
        retailer_id: UUID,
        subject_id: UUID,
        position: int,
        ordinal: int,
        data: dict[str, Any],
    ) -> WebhookEvent:
        event_id = webhook_event_id(event.originator_id, event.originator_version, kind)
        body = _JSON.encode(
            {"id": event_id, "type": kind, "created_at": format_timestamp(event.timestamp), "data": data}
        )
        return WebhookEvent(event_id, kind, retailer_id, subject_id, position, ordinal, body)
