"""A retailer's webhook endpoints and the deliveries made for them: the SQL of the API's routes.
Every query names the retailer: another retailer's endpoint or delivery is None, like a missing one."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from psycopg.rows import class_row
from psycopg_pool import ConnectionPool

SECRET_PREFIX = "whsec_"
PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"
STATUSES = (PENDING, SUCCEEDED, FAILED)
ENDPOINT_DELETED = "endpoint deleted"


@dataclass(frozen=True)
class EndpointRow:
    id: UUID
    retailer_id: UUID
    url: str
    events: list[str]
    description: str | None
    secret: str
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True)
class DeliveryRow:
    id: UUID
    endpoint_id: UUID
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    position: int  # of the source event in the log: deliveries are listed in log order
    ordinal: int


ENDPOINT_COLUMNS = "id, retailer_id, url, events, description, secret, created_at, disabled_at"
DELIVERY_COLUMNS = (
    "id, endpoint_id, event_id, event_type, status, attempts, last_status_code, last_error, next_attempt_at,"
    " created_at, delivered_at, position, ordinal"
)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


class WebhookStore:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def create_endpoint(self, retailer_id: UUID, url: str, events: list[str], description: str | None) -> EndpointRow:
        """A new endpoint, for the events after the head of the log now. Its secret is stored as
        made, not hashed: the dispatcher signs each delivery with it, and an HMAC needs the key."""
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(EndpointRow)) as curs:
            curs.execute(
                f"INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}, from_position)"
                " SELECT %s, %s, %s, %s, %s, %s, now(), NULL,"
                " (SELECT coalesce(max(notification_id), 0) FROM ledger_events)"
                f" RETURNING {ENDPOINT_COLUMNS}",
                (uuid4(), retailer_id, url, events, description, new_secret()),
            )
            row = curs.fetchone()
        assert row is not None
        return row

    def endpoint(self, retailer_id: UUID, endpoint_id: UUID) -> EndpointRow | None:
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(EndpointRow)) as curs:
            curs.execute(
                f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = %s AND retailer_id = %s",
                (endpoint_id, retailer_id),
            )
            return curs.fetchone()

    def endpoints(self, retailer_id: UUID, after: tuple[datetime, UUID] | None, limit: int) -> list[EndpointRow]:
        """The retailer's endpoints (deleted ones too), oldest first, after the previous page's last."""
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(EndpointRow)) as curs:
            curs.execute(
                f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE retailer_id = %(retailer_id)s"
                " AND (%(after_at)s::timestamptz IS NULL OR (created_at, id) > (%(after_at)s, %(after_id)s::uuid))"
                " ORDER BY created_at, id LIMIT %(limit)s",
                {
                    "retailer_id": retailer_id,
                    "after_at": after[0] if after else None,
                    "after_id": after[1] if after else None,
                    "limit": limit,
                },
            )
            return curs.fetchall()

    def disable_endpoint(self, retailer_id: UUID, endpoint_id: UUID) -> EndpointRow | None:
        """Stop delivering to the endpoint: no delivery is made for it any more, those pending
        are marked failed; it and its deliveries stay listed. Doing it again changes nothing."""
        with self.pool.connection() as conn, conn.transaction():
            with conn.cursor(row_factory=class_row(EndpointRow)) as curs:
                curs.execute(
                    "UPDATE webhook_endpoints SET disabled_at = coalesce(disabled_at, now())"
                    f" WHERE id = %s AND retailer_id = %s RETURNING {ENDPOINT_COLUMNS}",
                    (endpoint_id, retailer_id),
                )
                row = curs.fetchone()
            if row is not None:
                conn.execute(
                    "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, last_error = %s"
                    " WHERE endpoint_id = %s AND status = 'pending'",
                    (ENDPOINT_DELETED, endpoint_id),
                )
        return row

    def deliveries(
        self,
        retailer_id: UUID,
        endpoint_id: UUID | None,
        status: str | None,
        after: tuple[int, int, UUID] | None,
        limit: int,
    ) -> list[DeliveryRow]:
        """The retailer's deliveries in log order (position, ordinal, then id), after the previous
        page's last, of one endpoint and one status when given."""
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(DeliveryRow)) as curs:
            curs.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE retailer_id = %(retailer_id)s"
                " AND (%(endpoint_id)s::uuid IS NULL OR endpoint_id = %(endpoint_id)s)"
                " AND (%(status)s::text IS NULL OR status = %(status)s)"
                " AND (%(after_position)s::bigint IS NULL"
                " OR (position, ordinal, id) > (%(after_position)s, %(after_ordinal)s::smallint, %(after_id)s::uuid))"
                " ORDER BY position, ordinal, id LIMIT %(limit)s",
                {
                    "retailer_id": retailer_id,
                    "endpoint_id": endpoint_id,
                    "status": status,
                    "after_position": after[0] if after else None,
                    "after_ordinal": after[1] if after else None,
                    "after_id": after[2] if after else None,
                    "limit": limit,
                },
            )
            return curs.fetchall()

    def delivery(self, retailer_id: UUID, delivery_id: UUID) -> DeliveryRow | None:
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(DeliveryRow)) as curs:
            curs.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = %s AND retailer_id = %s",
                (delivery_id, retailer_id),
            )
            return curs.fetchone()

    def resend(self, retailer_id: UUID, delivery_id: UUID) -> DeliveryRow | None:
        """Queue the delivery again now (same event id and body), retried for a new window;
        None if the retailer has no such delivery or its endpoint was deleted."""
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(DeliveryRow)) as curs:
            curs.execute(
                "UPDATE webhook_deliveries d SET status = 'pending', next_attempt_at = now(), retry_from = now()"
                " FROM webhook_endpoints e WHERE d.id = %s AND d.retailer_id = %s"
                " AND e.id = d.endpoint_id AND e.disabled_at IS NULL"
                f" RETURNING {', '.join('d.' + c.strip() for c in DELIVERY_COLUMNS.split(','))}",
                (delivery_id, retailer_id),
            )
            return curs.fetchone()
