"""`CouponsView`: the SQL of the `coupons` and `reservations` read models (tables created by
schema.sql): a batch's rows and tracking record written in one transaction under the projection's
batch lock, and the queries of the API, the sweeper and verify."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from ledger.event_store import bound_waits, fewer_retries, freeze_tracking_statements
from projections.campaigns import insert_campaigns
from projections.coupon_changes import CouponChanges
from projections.coupon_rows import (
    RESERVATION_COLUMNS,
    ROW_COLUMNS,
    CouponOrder,
    CouponRow,
    CouponUpdate,
    NewCoupon,
    NewReservation,
    ProjectionLag,
    ReadModelSnapshot,
    ReservationEnd,
    ReservationRow,
)
from projections.redemptions import write_redemptions


def live_holds_sql(coupon_id: str) -> str:
    """A coupon's live holds at %(now)s: held and not past expires_at (Reservation.is_live), recorded
    as expired or not. Served by the partial index reservations_held_by_coupon."""
    return f"""
    (SELECT count(*) FROM reservations
     WHERE reservations.coupon_id = {coupon_id} AND reservations.status = 'held' AND reservations.expires_at > %(now)s)
"""


LIVE_HOLDS_SQL = live_holds_sql("coupons.id")
# Coupon.status in SQL, over a row of `coupons` (the FROM must name the table `coupons`, without
# an alias): uses and live holds together reaching max_uses is count_expired. The holds are only
# counted for a coupon with a max_uses that its uses alone have not reached.
STATUS_SQL = f"""
    CASE
        WHEN NOT is_active THEN 'inactive'
        WHEN starts_at IS NOT NULL AND %(now)s < starts_at THEN 'scheduled'
        WHEN expiry_date IS NOT NULL AND expiry_date <= %(now)s THEN 'time_expired'
        WHEN max_uses IS NULL THEN 'active'
        WHEN uses_count >= max_uses THEN 'count_expired'
        WHEN uses_count + {LIVE_HOLDS_SQL} >= max_uses THEN 'count_expired'
        ELSE 'active'
    END
"""
# Batch transactions of one projection serialize on this advisory lock (two-key form, so
# it can never collide with the single-key locks of the projection leader or schema.sql).
BATCH_LOCK_CLASS = 0x636C  # "cl"


class CouponsView(PostgresTrackingRecorder):
    """SQL of the `coupons` table (created by schema.sql)."""

    max_tracking_id = fewer_retries(PostgresTrackingRecorder.max_tracking_id)
    has_tracking_id = fewer_retries(PostgresTrackingRecorder.has_tracking_id)

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        bound_waits(datastore)
        freeze_tracking_statements(self)

    def record_batch(self, changes: CouponChanges, first_notification_id: int, tracking: Tracking) -> None:
        """Write a batch's coalesced changes and its one tracking record in one transaction.

        ``first_notification_id`` is the batch's first event, ``tracking`` its last one.
        Raises IntegrityError, writing nothing, if any event of the batch was already processed.
        """
        with self.datastore.transaction(commit=True) as curs:
            self.claim(curs, tracking.application_name, first_notification_id)
            self.write_changes(curs, changes)
            self._insert_tracking(curs, tracking)

    def write_changes(self, curs: Cursor[DictRow], changes: CouponChanges) -> None:
        """The coalesced row changes of a run of events, in the caller's transaction."""
        self.insert_coupons(curs, list(changes.created.values()))
        self.update_coupons(curs, list(changes.updated.values()))
        self.insert_reservations(curs, list(changes.holds.values()))
        self.update_reservations(curs, list(changes.ended.values()))
        insert_campaigns(curs, changes.campaigns)
        write_redemptions(curs, changes.redemptions, changes.reversals)

    def claim(self, curs: Cursor[DictRow], application_name: str, first_notification_id: int) -> None:
        """Make sure no event from ``first_notification_id`` on has been processed, and that no
        other batch can commit before this transaction ends.

        The library's tracking upsert alone only checks that the tracking id grows. That is
        enough when every runner processes one event per transaction, not when two runners
        cut the log into different batches: after a rival committed [11..50], our batch
        [11..80] would still raise the tracking id. So every batch first takes the projection's
        advisory lock, then reads the tracking id committed before it.
        """
        self.lock_batches(curs, application_name)
        position = self._max_tracking_id(application_name, curs)
        if position is not None and position >= first_notification_id:
            raise IntegrityError(
                f"{application_name} notification {first_notification_id} was already processed"
                f" (tracking is at {position}): another runner is projecting the same events"
            )

    def lock_batches(self, curs: Cursor[DictRow], application_name: str) -> None:
        """Take the projection's batch lock until the transaction ends: no other batch (nor a
        rebuild) can commit meanwhile."""
        curs.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
            (BATCH_LOCK_CLASS, f"{self.tracking_table_name}/{application_name}"),
        )

    def insert_coupons(self, curs: Cursor[DictRow], coupons: Sequence[NewCoupon]) -> None:
        if not coupons:
            return
        curs.execute(
            "INSERT INTO coupons (id, retailer_id, code, discount_type, discount_value, min_order_value,"
            " expiry_date, max_uses, uses_count, is_active, created_at, version, starts_at,"
            " max_uses_per_customer, max_discount_amount, scope, public, campaign_id, archived_at)"
            " SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::text[], %s::text[], %s::numeric[], %s::numeric[],"
            " %s::timestamptz[], %s::integer[], %s::integer[], %s::boolean[], %s::timestamptz[], %s::bigint[],"
            " %s::timestamptz[], %s::integer[], %s::numeric[], %s::jsonb[], %s::boolean[], %s::uuid[],"
            " %s::timestamptz[])",
            (
                [c.id for c in coupons],
                [c.retailer_id for c in coupons],
                [c.code for c in coupons],
                [c.discount_type for c in coupons],
                [c.discount_value for c in coupons],
                [c.min_order_value for c in coupons],
                [c.expiry_date for c in coupons],
                [c.max_uses for c in coupons],
                [c.uses_count for c in coupons],
                [c.is_active for c in coupons],
                [c.created_at for c in coupons],
                [c.version for c in coupons],
                [c.starts_at for c in coupons],
                [c.max_uses_per_customer for c in coupons],
                [c.max_discount_amount for c in coupons],
                [Jsonb(c.scope) if c.scope is not None else None for c in coupons],
                [c.public for c in coupons],
                [c.campaign_id for c in coupons],
                [c.archived_at for c in coupons],
            ),
        )

    def update_coupons(self, curs: Cursor[DictRow], updates: Sequence[CouponUpdate]) -> None:
        if not updates:
            return
        curs.execute(
            "UPDATE coupons AS c SET uses_count = c.uses_count + u.redeemed,"
            " is_active = coalesce(u.is_active, c.is_active), version = u.version"
            " FROM unnest(%s::uuid[], %s::integer[], %s::boolean[], %s::bigint[])"
            " AS u(id, redeemed, is_active, version)"
            " WHERE c.id = u.id",
            (
                [u.id for u in updates],
                [u.redeemed for u in updates],
                [u.is_active for u in updates],
                [u.version for u in updates],
            ),
        )
        # Changed terms and archiving are rare: one statement per coupon that has any.
        for update in updates:
            if not update.columns:
                continue
            names = sorted(update.columns)
            values = [Jsonb(v) if n == "scope" and v is not None else v for n, v in sorted(update.columns.items())]
            curs.execute(
                SQL("UPDATE coupons SET {} WHERE id = %s").format(
                    SQL(", ").join(SQL("{} = %s").format(Identifier(n)) for n in names)
                ),
                [*values, update.id],
            )

    def insert_reservations(self, curs: Cursor[DictRow], holds: Sequence[NewReservation]) -> None:
        if not holds:
            return
        curs.execute(
            "INSERT INTO reservations (id, retailer_id, coupon_id, code, customer_id, campaign_id, status,"
            " discount_amount, expires_at, created_at, ended_at, redemption_id, version)"
            " SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::text[], %s::text[], %s::uuid[],"
            " %s::text[], %s::numeric[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[], %s::uuid[],"
            " %s::bigint[])",
            (
                [h.id for h in holds],
                [h.retailer_id for h in holds],
                [h.coupon_id for h in holds],
                [h.code for h in holds],
                [h.customer_id for h in holds],
                [h.campaign_id for h in holds],
                [h.status for h in holds],
                [h.discount_amount for h in holds],
                [h.expires_at for h in holds],
                [h.created_at for h in holds],
                [h.ended_at for h in holds],
                [h.redemption_id for h in holds],
                [h.version for h in holds],
            ),
        )

    def update_reservations(self, curs: Cursor[DictRow], ends: Sequence[ReservationEnd]) -> None:
        if not ends:
            return
        curs.execute(
            "UPDATE reservations AS r SET status = u.status, ended_at = u.ended_at,"
            " redemption_id = coalesce(u.redemption_id, r.redemption_id), version = u.version"
            " FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::uuid[], %s::bigint[])"
            " AS u(id, status, ended_at, redemption_id, version)"
            " WHERE r.id = u.id",
            (
                [e.id for e in ends],
                [e.status for e in ends],
                [e.ended_at for e in ends],
                [e.redemption_id for e in ends],
                [e.version for e in ends],
            ),
        )

    def list_coupons(
        self,
        retailer_id: UUID,
        now: datetime,
        status: str | None,
        after_code: str | None,
        limit: int,
        campaign_id: UUID | None = None,
        public_only: bool = False,
        order: CouponOrder | None = None,
    ) -> list[CouponRow]:
        """A retailer's coupons (archived ones left out) in code order after ``after_code``, or in
        ``order`` from its position, of one status and one campaign when given; only the public ones
        with ``public_only`` (the storefront's list, served by the partial index coupons_public_code).
        Each row has its live holds at ``now``, counted only for the rows of the page."""
        order = order or CouponOrder(after_code=after_code)
        public = " AND public" if public_only else ""
        direction, past = ("DESC", "<") if order.descending else ("", ">")
        if order.key == "code":
            sort = f"code {direction}"
            start = f"(%(after)s::text IS NULL OR code {past} %(after)s)"
        else:
            sort = f"{order.key} {direction}, code {direction}"
            start = f"(%(after)s::text IS NULL OR ({order.key}, code) {past} (%(after_value)s, %(after)s))"
        query = (
            f"SELECT c.*, {live_holds_sql('c.id')} AS holds"
            f" FROM (SELECT {ROW_COLUMNS}, {STATUS_SQL} AS status"
            f" FROM coupons WHERE retailer_id = %(retailer_id)s AND {start} AND archived_at IS NULL{public}"
            f" AND (%(campaign_id)s::uuid IS NULL OR campaign_id = %(campaign_id)s)) c"
            f" WHERE %(status)s::text IS NULL OR status = %(status)s ORDER BY {sort} LIMIT %(limit)s"
        )
        params = {
            "retailer_id": retailer_id,
            "now": now,
            "status": status,
            "after": order.after_code,
            "after_value": order.after_value,
            "limit": limit,
            "campaign_id": campaign_id,
        }
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query, params)
            return [CouponRow(**row) for row in curs.fetchall()]

    def campaign_coupons(
        self, retailer_id: UUID, campaign_id: UUID, now: datetime, page_size: int = 5000
    ) -> Iterator[CouponRow]:
        """Every coupon of a campaign (archived ones left out) in code order, read a page at a time."""
        after: str | None = None
        while True:
            page = self.list_coupons(retailer_id, now, None, after, page_size, campaign_id=campaign_id)
            yield from page
            if len(page) < page_size:
                return
            after = page[-1].code

    def consistent_snapshot(self, application_name: str) -> ReadModelSnapshot:
        """The tracking position, every coupon's uses_count and every hold, read in one snapshot."""
        with self.datastore.get_connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            position = self._max_tracking_id(application_name, conn.cursor()) or 0
            rows = conn.execute("SELECT id, uses_count FROM coupons").fetchall()
            holds = conn.execute(f"SELECT {RESERVATION_COLUMNS} FROM reservations").fetchall()
        return ReadModelSnapshot(
            position,
            {row["id"]: row["uses_count"] for row in rows},
            {row["id"]: ReservationRow(**row) for row in holds},
        )

    def expired_holds(
        self, now: datetime, limit: int, after: tuple[datetime, UUID] | None = None
    ) -> list[tuple[UUID, datetime]]:
        """(id, expires_at) of holds still in status held whose expires_at is at or before ``now``,
        the longest expired first, after ``after`` (an (expires_at, id) of the previous page).
        The sweeper's query, served by the partial index reservations_held_by_expiry."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT id, expires_at FROM reservations WHERE status = 'held' AND expires_at <= %(now)s"
                " AND (%(after_expiry)s::timestamptz IS NULL"
                " OR (expires_at, id) > (%(after_expiry)s::timestamptz, %(after_id)s::uuid))"
                " ORDER BY expires_at, id LIMIT %(limit)s",
                {
                    "now": now,
                    "limit": limit,
                    "after_expiry": after[0] if after else None,
                    "after_id": after[1] if after else None,
                },
            )
            return [(row["id"], row["expires_at"]) for row in curs.fetchall()]

    def get_reservation(self, reservation_id: UUID) -> ReservationRow | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(f"SELECT {RESERVATION_COLUMNS} FROM reservations WHERE id = %s", (reservation_id,))
            row = curs.fetchone()
        return None if row is None else ReservationRow(**row)

    def redemptions_with_orders(self, redemption_ids: list[UUID]) -> set[UUID]:
        """Of these redemptions, the ones an order placed at checkout holds (order_coupons)."""
        if not redemption_ids:
            return set()
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT oc.redemption_id FROM order_coupons oc JOIN orders o ON o.id = oc.order_id"
                " WHERE oc.redemption_id = ANY(%s)",
                (redemption_ids,),
            )
            return {row["redemption_id"] for row in curs.fetchall()}

    def read_lag(self, application_name: str) -> ProjectionLag:
        """How far this read model is behind the application's event log, for benchmarks and
        monitoring: ``(head_notification_id, tracking_notification_id)`` read in ONE query
        (one snapshot), so the two numbers are comparable. ``read_lag(...).behind`` is the gap.

        ``application_name`` is the application's name (``CouponLedger.name``); its events are
        in the library's table ``<name>_events`` in the same database and schema.
        """
        events_table = Identifier(self.datastore.schema, f"{application_name.lower()}_events")
        tracking_table = Identifier(self.datastore.schema, self.tracking_table_name)
        query = SQL(
            "SELECT (SELECT coalesce(max(notification_id), 0) FROM {events}) AS head,"
            " (SELECT coalesce(max(notification_id), 0) FROM {tracking} WHERE application_name = %s) AS tracked"
        ).format(events=events_table, tracking=tracking_table)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query, (application_name,))
            row = curs.fetchone()
        assert row is not None
        return ProjectionLag(int(row["head"]), int(row["tracked"]))

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
