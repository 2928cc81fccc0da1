"""What verify keeps while it walks the log: a report, and per coupon, customer usage and campaign
only the counters its checks need (keyed by the id's 128-bit integer, no code or full aggregate).
Per redemption and per hold nothing is kept once its events have been matched (see audit.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from uuid import UUID

ZERO = Decimal("0.00")
NOT_IN_VIEW = -1  # live_in_view of a coupon created after the read model's position


@dataclass(slots=True)
class Report:
    coupons: int = 0
    redemptions: int = 0
    reversals: int = 0
    reservations: int = 0
    projected_through: int = 0
    head: int = 0
    violations: list[str] = field(default_factory=list)


class CouponState:
    __slots__ = ("holds", "live", "live_in_view", "max_uses", "max_uses_per_customer")

    def __init__(self, max_uses: int | None, max_uses_per_customer: int | None, in_view: bool) -> None:
        self.max_uses = max_uses
        self.max_uses_per_customer = max_uses_per_customer
        self.live = 0  # Redeemed - RedemptionReversed so far
        self.live_in_view = 0 if in_view else NOT_IN_VIEW  # the same, through the read model's position
        self.holds: dict[int, datetime] | None = None  # open holds: reservation id -> expires_at


class UsageState:
    __slots__ = ("coupon", "customer_id", "holds", "redemptions", "started", "uses")

    def __init__(self, coupon: int, customer_id: str) -> None:
        self.coupon = coupon
        self.customer_id = customer_id
        self.started = False  # a CustomerUsage.Started was seen
        self.uses = 0  # CustomerUsage Used - Returned so far
        self.redemptions = 0  # the customer's live redemptions of the coupon (Redemption events)
        self.holds: dict[int, datetime] | None = None


class CampaignState:
    __slots__ = (
        "holds",
        "live",
        "live_discount",
        "max_discount_total",
        "max_redemptions",
        "name",
        "used",
        "used_discount",
    )

    def __init__(self, name: str, max_redemptions: int | None, max_discount_total: Decimal | None) -> None:
        self.name = name
        self.max_redemptions = max_redemptions
        self.max_discount_total = max_discount_total
        self.used = 0  # Campaign Used - Returned so far
        self.used_discount = ZERO
        self.live = 0  # live redemptions of its codes (Redemption events)
        self.live_discount = ZERO
        self.holds: dict[int, tuple[datetime, Decimal]] = {}

    def label(self, campaign_id: UUID) -> str:
        return f"campaign {self.name} ({campaign_id})"


def live_holds(holds: dict[int, datetime] | None, at: datetime) -> int:
    """The holds that count at ``at``: the ledger's rule, now < expires_at."""
    return sum(1 for expires_at in holds.values() if at < expires_at) if holds else 0


def add_hold(holds: dict[int, datetime] | None, key: int, expires_at: datetime) -> dict[int, datetime]:
    holds = holds if holds is not None else {}
    holds[key] = expires_at
    return holds


def pop_hold(holds: dict[int, datetime] | None, key: int) -> tuple[dict[int, datetime] | None, datetime | None]:
    """The holds without ``key`` (None once empty) and its expires_at (None: it was not held)."""
    if not holds or key not in holds:
        return holds, None
    expires_at = holds.pop(key)
    return (holds or None), expires_at
