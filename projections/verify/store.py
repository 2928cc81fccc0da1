"""The reads verify makes besides walking the log: a few aggregates' events by id, in short
autocommit statements on the event store's own tables (the library reads one aggregate per query).

Each read is one statement (its own snapshot): nothing holds a transaction open while Python works.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from ledger.application import CouponLedger
from ledger.domain import Coupon, Redemption, Reservation

CREATED = get_topic(Coupon.Created)
REDEEMED = get_topic(Coupon.Redeemed)
GIVEN_BACK = get_topic(Coupon.RedemptionReversed)
HELD = get_topic(Reservation.Held)
RECORDED = get_topic(Redemption.Recorded)


class EventStore:
    """Targeted reads of the ledger's events table."""

    def __init__(self, ledger: CouponLedger) -> None:
        self.ledger = ledger
        recorder: Any = ledger.recorder
        self.datastore = recorder.datastore
        self.events = Identifier(self.datastore.schema, recorder.events_table_name)
        self._codes: dict[UUID, str] = {}

    def page(self, after: int, limit: int) -> list[Any]:
        """The log after notification ``after``: each event's row with its links and owner."""
        return self._rows(
            SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state, prev_hash, hash, code"
                " FROM {events} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
            ),
            (after, limit),
        )

    def decode(self, row: Any) -> Any:
        return self._decode(row)

    def rows(self, statement: SQL, params: tuple[Any, ...]) -> list[Any]:
        return self._rows(statement, params)

    def _rows(self, statement: SQL, params: tuple[Any, ...]) -> list[Any]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement.format(events=self.events), params)
            return list(curs.fetchall())

    def _decode(self, row: Any) -> Any:
        stored = StoredEvent(
            originator_id=row["originator_id"],
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=bytes(row["state"]),
        )
        return self.ledger.mapper.to_domain_event(stored)

    def first_events(self, ids: Iterable[UUID], topic: str) -> dict[UUID, Any]:
        """The first event (version 1) of each of these aggregates that has one of ``topic``."""
        wanted = list(set(ids))
        if not wanted:
            return {}
        rows = self._rows(
            SQL(
                "SELECT originator_id, originator_version, topic, state FROM {events}"
                " WHERE originator_id = ANY(%s) AND originator_version = 1 AND topic = %s"
            ),
            (wanted, topic),
        )
        return {row["originator_id"]: self._decode(row) for row in rows}

    def streams(self, ids: Iterable[UUID], through: int | None = None) -> dict[UUID, list[Any]]:
        """Every event of these aggregates (through notification ``through``), in version order."""
        wanted = list(set(ids))
        if not wanted:
            return {}
        rows = self._rows(
            SQL(
                "SELECT originator_id, originator_version, topic, state FROM {events}"
                " WHERE originator_id = ANY(%s) AND (%s::bigint IS NULL OR notification_id <= %s)"
                " ORDER BY originator_id, originator_version"
            ),
            (wanted, through, through),
        )
        found: dict[UUID, list[Any]] = {}
        for row in rows:
            found.setdefault(row["originator_id"], []).append(self._decode(row))
        return found

    def code(self, coupon_id: UUID) -> str | None:
        """The code a coupon was created with (for messages: verify keeps no code per coupon)."""
        if coupon_id not in self._codes:
            created = self.first_events([coupon_id], CREATED).get(coupon_id)
            if created is None:
                return None
            self._codes[coupon_id] = created.code
        return self._codes[coupon_id]

    def uses_through(self, coupon_id: UUID, through: int) -> tuple[bool, int]:
        """Whether the coupon was created by notification ``through``, and its Redeemed -
        RedemptionReversed events by then (counted by topic: nothing is decoded)."""
        rows = self._rows(
            SQL(
                "SELECT count(*) FILTER (WHERE topic = %s) AS created,"
                " count(*) FILTER (WHERE topic = %s) - count(*) FILTER (WHERE topic = %s) AS live"
                " FROM {events} WHERE originator_id = %s AND notification_id <= %s"
            ),
            (CREATED, REDEEMED, GIVEN_BACK, coupon_id, through),
        )
        return bool(rows[0]["created"]), int(rows[0]["live"])

    def unprojected(self, through: int) -> list[tuple[str, UUID]]:
        """Coupons and holds created by notification ``through`` that have no read-model row: one
        statement (one snapshot, in which the read model is at ``through`` or later)."""
        rows = self._rows(
            SQL(
                "SELECT e.topic, e.originator_id FROM {events} e WHERE e.notification_id <= %s AND ("
                " (e.topic = %s AND NOT EXISTS (SELECT 1 FROM coupons c WHERE c.id = e.originator_id))"
                " OR (e.topic = %s AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.id = e.originator_id)))"
                " ORDER BY e.originator_id"
            ),
            (through, CREATED, HELD),
        )
        return [("coupon" if row["topic"] == CREATED else "hold", row["originator_id"]) for row in rows]
