"""The `coupons` read model: one row per coupon with its use count, for lists and analytics.

Every row change is written in the same transaction as the tracking record of the event
that caused it, so a runner that stops anywhere, or crashes mid-event, resumes without
skipping or double counting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import Environment, EnvType

from ledger.domain import Coupon

STATUS_SQL = """
    CASE
        WHEN NOT is_active THEN 'inactive'
        WHEN expiry_date IS NOT NULL AND expiry_date <= %(now)s THEN 'time_expired'
        WHEN max_uses IS NOT NULL AND uses_count >= max_uses THEN 'count_expired'
        ELSE 'active'
    END
"""


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


class CouponsView(PostgresTrackingRecorder):
    """SQL of the `coupons` table (created by schema.sql)."""

    def insert_coupon(self, event: Coupon.Created, tracking: Tracking) -> None:
        self._write(
            tracking,
            "INSERT INTO coupons (id, retailer_id, code, discount_type, discount_value, min_order_value,"
            " expiry_date, max_uses, uses_count, is_active, created_at, version)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, %s, %s, %s)",
            (
                event.originator_id,
                event.retailer_id,
                event.code,
                event.discount_type,
                event.discount_value,
                event.min_order_value,
                event.expires_at,
                event.max_uses,
                event.is_active,
                event.timestamp,
                event.originator_version,
            ),
        )

    def set_active(self, coupon_id: UUID, version: int, is_active: bool, tracking: Tracking) -> None:
        self._write(
            tracking,
            "UPDATE coupons SET is_active = %s, version = %s WHERE id = %s",
            (is_active, version, coupon_id),
        )

    def count_redemption(self, coupon_id: UUID, version: int, tracking: Tracking) -> None:
        self._write(
            tracking,
            "UPDATE coupons SET uses_count = uses_count + 1, version = %s WHERE id = %s",
            (version, coupon_id),
        )

    def skip(self, tracking: Tracking) -> None:
        self._write(tracking)

    def _write(self, tracking: Tracking, statement: str | None = None, params: tuple[Any, ...] = ()) -> None:
        with self.datastore.transaction(commit=True) as curs:
            if statement is not None:
                curs.execute(statement, params)
            self._insert_tracking(curs, tracking)

    def list_coupons(
        self, retailer_id: UUID, now: datetime, status: str | None, after_code: str | None, limit: int
    ) -> list[CouponRow]:
        query = (
            f"SELECT * FROM (SELECT id, retailer_id, code, discount_type, discount_value, min_order_value,"
            f" expiry_date, max_uses, uses_count, is_active, created_at, {STATUS_SQL} AS status"
            f" FROM coupons WHERE retailer_id = %(retailer_id)s AND code > %(after)s) c"
            f" WHERE %(status)s::text IS NULL OR status = %(status)s ORDER BY code LIMIT %(limit)s"
        )
        params = {"retailer_id": retailer_id, "now": now, "status": status, "after": after_code or "", "limit": limit}
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query, params)
            return [CouponRow(**row) for row in curs.fetchall()]

    def consistent_snapshot(self, application_name: str) -> tuple[int, dict[UUID, int]]:
        """The tracking position and every coupon's uses_count, read in one snapshot."""
        with self.datastore.get_connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            position = self._max_tracking_id(application_name, conn.cursor()) or 0
            rows = conn.execute("SELECT id, uses_count FROM coupons").fetchall()
        return position, {row["id"]: row["uses_count"] for row in rows}

    def wait_until_processed(self, application_name: str, notification_id: int | None, timeout: float) -> None:
        """Block until the view has processed ``notification_id``; raise TimeoutError after ``timeout``.

        Polls from 2 ms up, because the runner usually trails the head by milliseconds.
        """
        deadline = time.monotonic() + timeout
        interval = 0.002
        while not self.has_tracking_id(application_name, notification_id):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"read model has not reached notification {notification_id}")
            time.sleep(min(interval, remaining))
            interval = min(interval * 2, 0.1)


class CouponsProjection(Projection[CouponsView]):
    name = "coupons_projection"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.skip(tracking)

    @process_event.register
    def _(self, domain_event: Coupon.Created, tracking: Tracking) -> None:
        self.view.insert_coupon(domain_event, tracking)

    @process_event.register
    def _(self, domain_event: Coupon.Deactivated, tracking: Tracking) -> None:
        self.view.set_active(domain_event.originator_id, domain_event.originator_version, False, tracking)

    @process_event.register
    def _(self, domain_event: Coupon.Activated, tracking: Tracking) -> None:
        self.view.set_active(domain_event.originator_id, domain_event.originator_version, True, tracking)

    @process_event.register
    def _(self, domain_event: Coupon.Redeemed, tracking: Tracking) -> None:
        self.view.count_redemption(domain_event.originator_id, domain_event.originator_version, tracking)


def construct_view(env: EnvType) -> CouponsView:
    """A view for readers, configured exactly as the runner configures its own."""
    factory = InfrastructureFactory[CouponsView].construct(env=Environment(CouponsProjection.name, dict(env)))
    return factory.tracking_recorder(CouponsView)
