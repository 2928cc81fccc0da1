"""The rows of the `coupons` and `reservations` read models: as read (CouponRow, ReservationRow,
ReadModelSnapshot, ProjectionLag), as a batch writes them (NewCoupon, CouponUpdate, NewReservation,
ReservationEnd), the statuses of a hold and the columns the rows are read from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

ROW_COLUMNS = (
    "id, retailer_id, code, discount_type, discount_value, min_order_value, expiry_date, max_uses, uses_count,"
    " is_active, created_at, starts_at, max_uses_per_customer, max_discount_amount, scope, public, campaign_id"
)


@dataclass(frozen=True)
class CouponRow:
    id: UUID
    retailer_id: UUID
    code: str
    discount_type: str
    discount_value: Decimal
    min_order_value: Decimal | None
    expiry_date: datetime | None
    max_uses: int | None
    uses_count: int
    is_active: bool
    created_at: datetime
    status: str
    starts_at: datetime | None
    max_uses_per_customer: int | None
    max_discount_amount: Decimal | None
    scope: dict[str, list[str]] | None
    public: bool
    campaign_id: UUID | None
    holds: int
    """Live holds at the moment the list was read."""


# The orders a retailer's coupons can be listed in, each with the code breaking ties.
SORT_KEYS = ("code", "created_at", "uses_count")


@dataclass(frozen=True)
class CouponOrder:
    """The order of a coupons list, and where a page starts: after the row whose sort key is
    ``after_value`` and whose code is ``after_code`` (for ``code`` order only the code counts)."""

    key: str = "code"
    descending: bool = False
    after_code: str | None = None
    after_value: datetime | int | None = None

    def __post_init__(self) -> None:
        if self.key not in SORT_KEYS:
            raise ValueError(f"not a coupons order: {self.key!r}")


class ProjectionLag(NamedTuple):
    """The head of the event log and the read model's tracking position, read in one query."""

    head_notification_id: int
    """The highest notification id in the event log (0 for an empty log)."""
    tracking_notification_id: int
    """The highest notification id the read model has processed (0 before its first batch)."""

    @property
    def behind(self) -> int:
        """Notifications not yet projected: an upper bound on events behind, exact unless a
        rolled-back write left a gap in the notification ids."""
        return self.head_notification_id - self.tracking_notification_id


@dataclass
class NewCoupon:
    """A coupon created in the batch, with every later change of the same batch folded in."""

    id: UUID
    retailer_id: UUID
    code: str
    discount_type: str
    discount_value: Decimal
    min_order_value: Decimal | None
    expiry_date: datetime | None
    max_uses: int | None
    uses_count: int
    is_active: bool
    created_at: datetime
    version: int
    starts_at: datetime | None = None
    max_uses_per_customer: int | None = None
    max_discount_amount: Decimal | None = None
    scope: dict[str, list[str]] | None = None
    public: bool = False
    campaign_id: UUID | None = None
    archived_at: datetime | None = None


@dataclass
class CouponUpdate:
    """The batch's net change to a coupon that existed before it."""

    id: UUID
    version: int
    redeemed: int = 0  # uses made minus uses given back
    is_active: bool | None = None  # None: the batch did not change it
    columns: dict[str, Any] = field(default_factory=dict)  # other columns the batch set (PATCH, archive)


HELD = "held"
CONFIRMED = "confirmed"
RELEASED = "released"
EXPIRED = "expired"
RESERVATION_STATUSES = (HELD, CONFIRMED, RELEASED, EXPIRED)


@dataclass
class NewReservation:
    """A hold made in the batch (Reservation.Held), with whatever else the batch did to it."""

    id: UUID
    retailer_id: UUID
    coupon_id: UUID
    code: str
    customer_id: str | None
    campaign_id: UUID | None
    status: str
    discount_amount: Decimal
    expires_at: datetime
    created_at: datetime
    version: int
    ended_at: datetime | None = None
    redemption_id: UUID | None = None


@dataclass
class ReservationEnd:
    """How the batch ended a hold made before it: confirmed, released or expired (the last of its
    events wins, as processed one by one; a redemption id once set stays)."""

    id: UUID
    status: str
    ended_at: datetime
    version: int
    redemption_id: UUID | None = None


@dataclass(frozen=True)
class ReservationRow:
    """A row of the `reservations` read model."""

    id: UUID
    retailer_id: UUID
    coupon_id: UUID
    code: str
    customer_id: str | None
    campaign_id: UUID | None
    status: str
    discount_amount: Decimal
    expires_at: datetime
    created_at: datetime
    ended_at: datetime | None
    redemption_id: UUID | None


RESERVATION_COLUMNS = (
    "id, retailer_id, coupon_id, code, customer_id, campaign_id, status, discount_amount, expires_at, created_at,"
    " ended_at, redemption_id"
)


class ReadModelSnapshot(NamedTuple):
    """The read model as of one tracking position (read in one snapshot), for verify."""

    position: int
    uses_counts: dict[UUID, int]
    reservations: dict[UUID, ReservationRow]
