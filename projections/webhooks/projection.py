"""The webhooks projection: the outbox of webhook deliveries, made from the event log.

It has its own tracking record (``webhooks_projection_tracking``) and its own runner beside the
coupons projection's (projections/runner.py, one leader per database). Each batch of the log is
turned into webhook events (events.py), each matched with the endpoints of its retailer that asked
for its kind and were live at its position, and written as rows of ``webhook_deliveries`` in ONE
transaction with the batch's tracking record. So no event is skipped and none makes two rows: a
batch claims its place in the log first (as the coupons projection's do), and (endpoint_id,
event_id) is unique besides. It only reads the log: sending is the dispatcher's (dispatcher.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import InfrastructureFactory, IntegrityError, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import Environment, EnvType, get_topic
from psycopg import Cursor
from psycopg.rows import DictRow

from ledger.domain import NAMESPACE
from ledger.event_store import bound_waits, fewer_retries, freeze_tracking_statements
from projections.coupons import cannot_write
from projections.coupons_view import BATCH_LOCK_CLASS
from projections.webhooks.events import (
    CAMPAIGN_EVENTS,
    COUPON_EVENTS,
    CampaignState,
    CouponState,
    WebhookEvent,
    WebhookEvents,
)

log = logging.getLogger(__name__)


def delivery_id(endpoint_id: UUID, event_id: str) -> UUID:
    return uuid5(NAMESPACE, f"webhook-delivery/{endpoint_id}/{event_id}")


class WebhooksView(PostgresTrackingRecorder):
    """The SQL of the webhooks projection: its state tables, the outbox and its tracking record."""

    max_tracking_id = fewer_retries(PostgresTrackingRecorder.max_tracking_id)
    has_tracking_id = fewer_retries(PostgresTrackingRecorder.has_tracking_id)

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        bound_waits(datastore)
        freeze_tracking_statements(self)

    def record_batch(self, batch: Sequence[tuple[DomainEventProtocol[Any], Tracking]], skip: bool = False) -> int:
        """Write a batch's deliveries, the state it changed and its tracking record (that of its
        last event) in one transaction; how many deliveries it made. Raises IntegrityError,
        writing nothing, if any event of the batch was already processed. With ``skip``, the
        tracking record alone (an event whose webhooks cannot be stored)."""
        last = batch[-1][1]
        with self.datastore.transaction(commit=True) as curs:
            self.claim(curs, last.application_name, batch[0][1].notification_id)
            count = 0 if skip else self.write_webhook_events(curs, batch)
            self._insert_tracking(curs, last)
        return count

    def claim(self, curs: Cursor[DictRow], application_name: str, first_notification_id: int) -> None:
        """As CouponsView.claim: under this projection's batch lock, no event from
        ``first_notification_id`` on may have been processed already."""
        curs.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
            (BATCH_LOCK_CLASS, f"{self.tracking_table_name}/{application_name}"),
        )
        position = self._max_tracking_id(application_name, curs)
        if position is not None and position >= first_notification_id:
            raise IntegrityError(
                f"{application_name} notification {first_notification_id} was already processed"
                f" (tracking is at {position}): another runner is projecting the same events"
            )

    def write_webhook_events(
        self, curs: Cursor[DictRow], batch: Sequence[tuple[DomainEventProtocol[Any], Tracking]]
    ) -> int:
        """The batch's deliveries and the coupon and campaign state it changed; how many deliveries."""
        coupon_ids = list({e.originator_id for e, _ in batch if isinstance(e, COUPON_EVENTS)})
        campaign_ids = list({e.originator_id for e, _ in batch if isinstance(e, CAMPAIGN_EVENTS)})
        if not coupon_ids and not campaign_ids:
            return 0
        endpoints = self.live_endpoints(curs)
        wanted_kinds: dict[UUID, list[tuple[str, int]]] = {}
        for endpoint in endpoints:
            wanted_kinds.setdefault(endpoint["retailer_id"], []).extend(
                (kind, endpoint["from_position"]) for kind in endpoint["events"]
            )

        def wanted(retailer_id: UUID, kind: str, position: int) -> bool:
            return any(k == kind and since < position for k, since in wanted_kinds.get(retailer_id, ()))

        events = WebhookEvents(self.read_coupons(curs, coupon_ids), self.read_campaigns(curs, campaign_ids), wanted)
        made = [made for event, tracking in batch for made in events.of(event, tracking.notification_id)]
        self.write_coupons(curs, [events.coupons[i] for i in events.changed_coupons])
        self.write_campaigns(curs, [events.campaigns[i] for i in events.changed_campaigns])
        return self.insert_deliveries(curs, made, endpoints)

    @staticmethod
    def live_endpoints(curs: Cursor[DictRow]) -> list[DictRow]:
        """Every endpoint not deleted (a few per retailer at most), read once per batch and held
        (FOR SHARE) until it commits: a delete waits for the batch, then fails the deliveries the
        batch made for it too, so none is left pending for a deleted endpoint."""
        curs.execute(
            "SELECT id, retailer_id, events, from_position FROM webhook_endpoints WHERE disabled_at IS NULL FOR SHARE"
        )
        return curs.fetchall()

    @staticmethod
    def read_coupons(curs: Cursor[DictRow], ids: list[UUID]) -> dict[UUID, CouponState]:
        if not ids:
            return {}
        curs.execute(
            "SELECT coupon_id, retailer_id, code, campaign_id, max_uses, uses FROM webhook_coupon_state"
            " WHERE coupon_id = ANY(%s)",
            (ids,),
        )
        return {row["coupon_id"]: CouponState(**row) for row in curs.fetchall()}

    @staticmethod
    def read_campaigns(curs: Cursor[DictRow], ids: list[UUID]) -> dict[UUID, CampaignState]:
        if not ids:
            return {}
        curs.execute(
            "SELECT campaign_id, retailer_id, name, max_redemptions, max_discount_total, redemptions, discount_total"
            " FROM webhook_campaign_state WHERE campaign_id = ANY(%s)",
            (ids,),
        )
        return {row["campaign_id"]: CampaignState(**row) for row in curs.fetchall()}

    @staticmethod
    def write_coupons(curs: Cursor[DictRow], states: list[CouponState]) -> None:
        if not states:
            return
        curs.execute(
            "INSERT INTO webhook_coupon_state AS s (coupon_id, retailer_id, code, campaign_id, max_uses, uses)"
            " SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::text[], %s::uuid[], %s::integer[], %s::integer[])"
            " ON CONFLICT (coupon_id) DO UPDATE SET max_uses = excluded.max_uses, uses = excluded.uses",
            (
                [s.coupon_id for s in states],
                [s.retailer_id for s in states],
                [s.code for s in states],
                [s.campaign_id for s in states],
                [s.max_uses for s in states],
                [s.uses for s in states],
            ),
        )

    @staticmethod
    def write_campaigns(curs: Cursor[DictRow], states: list[CampaignState]) -> None:
        if not states:
            return
        curs.execute(
            "INSERT INTO webhook_campaign_state AS s"
            " (campaign_id, retailer_id, name, max_redemptions, max_discount_total, redemptions, discount_total)"
            " SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::text[], %s::integer[], %s::numeric[],"
            " %s::integer[], %s::numeric[])"
            " ON CONFLICT (campaign_id) DO UPDATE SET redemptions = excluded.redemptions,"
            " discount_total = excluded.discount_total",
            (
                [s.campaign_id for s in states],
                [s.retailer_id for s in states],
                [s.name for s in states],
                [s.max_redemptions for s in states],
                [s.max_discount_total for s in states],
                [s.redemptions for s in states],
                [s.discount_total for s in states],
            ),
        )

    @staticmethod
    def insert_deliveries(curs: Cursor[DictRow], made: list[WebhookEvent], endpoints: list[DictRow]) -> int:
        """A row per (endpoint, webhook event) for each live endpoint of the event's retailer that
        asked for its kind and was created before the event's position; none made twice."""
        if not made:
            return 0
        rows = [
            (endpoint["id"], event)
            for event in made
            for endpoint in endpoints
            if endpoint["retailer_id"] == event.retailer_id
            and event.kind in endpoint["events"]
            and endpoint["from_position"] < event.position
        ]
        if not rows:
            return 0
        curs.execute(
            "INSERT INTO webhook_deliveries (id, endpoint_id, retailer_id, event_id, event_type, subject_id,"
            " position, ordinal, payload, status, next_attempt_at, retry_from, created_at)"
            " SELECT u.*, 'pending', now(), now(), now() FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[],"
            " %s::text[], %s::text[], %s::uuid[], %s::bigint[], %s::smallint[], %s::text[]) AS u"
            " ON CONFLICT (endpoint_id, event_id) DO NOTHING",
            (
                [delivery_id(endpoint_id, e.event_id) for endpoint_id, e in rows],
                [endpoint_id for endpoint_id, _ in rows],
                [e.retailer_id for _, e in rows],
                [e.event_id for _, e in rows],
                [e.kind for _, e in rows],
                [e.subject_id for _, e in rows],
                [e.position for _, e in rows],
                [e.ordinal for _, e in rows],
                [e.body for _, e in rows],
            ),
        )
        return curs.rowcount


class WebhooksProjection(Projection[WebhooksView]):
    """Projects the event log into webhook deliveries, a batch per transaction (see the module)."""

    name = "webhooks_projection"
    # Only the events that can make a webhook or change the state it keeps are read (and decoded)
    # from the log: half of a busy ledger's events are a redemption's own record, which makes none.
    # Its tracking record so moves from one of these events to the next.
    topics = tuple(get_topic(cls) for cls in COUPON_EVENTS + CAMPAIGN_EVENTS)

    def process_events(self, batch: Sequence[tuple[DomainEventProtocol[Any], Tracking]]) -> None:
        """Unlike the coupons projection, an event whose rows the database refuses (possible only
        for one written past the API's checks) does not stop it: that event makes no webhook
        (logged, naming it), and the others still go out."""
        if not batch:
            return
        try:
            self.view.record_batch(batch)
        except Exception as error:
            if not cannot_write(error):
                raise
            if len(batch) > 1:
                for item in batch:
                    self.process_events([item])
                return
            event = batch[0][0]
            log.error(
                "webhooks projection skips event originator_id=%s originator_version=%s topic=%s: %s",
                event.originator_id,
                event.originator_version,
                get_topic(type(event)),
                error,
            )
            self.view.record_batch(batch, skip=True)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.process_events([(domain_event, tracking)])


def construct_webhooks_view(env: EnvType) -> WebhooksView:
    """A view for readers, configured exactly as the runner configures its own."""
    factory = InfrastructureFactory[WebhooksView].construct(env=Environment(WebhooksProjection.name, dict(env)))
    return factory.tracking_recorder(WebhooksView)
