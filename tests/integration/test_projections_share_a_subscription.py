"""The coupons projection and the webhooks' outbox projected by one leader from one subscription:
each event pulled and decoded once; each projection from its own tracking record, exactly once;
a leader runs the projections whose locks it holds and takes the others when they are freed;
the outbox goes on when the coupons projection stops at an event it cannot hold."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import Mapper, Notification
from psycopg_pool import ConnectionPool

from ledger.application import CouponLedger
from ledger.domain import PERCENTAGE, Coupon, coupon_id_for
from projections.leader import COUPONS_PROJECTION, ProjectionLeader
from projections.runner import LEADER_LOCK_KEY
from projections.webhooks import WEBHOOKS_PROJECTION
from projections.webhooks.events import EVENT_KINDS
from projections.webhooks.store import WebhookStore
from tests.support.commands import apply, create_coupon
from tests.support.postgres import (
    head,
    project_to_head,
    projection_listeners,
    scalar,
    tracking_position,
    uses_count,
    wait_for,
)

BOTH = (COUPONS_PROJECTION, WEBHOOKS_PROJECTION)


@pytest.fixture
def store(database_url: str) -> Iterator[WebhookStore]:
    with ConnectionPool(database_url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        yield WebhookStore(pool)


def webhooks_position(url: str) -> int:
    return tracking_position(url, "webhooks_projection_tracking")


def last_webhook_event(url: str) -> int:
    """The position of the log's last event the webhooks projection reads (its topics)."""
    topics = list(WEBHOOKS_PROJECTION.projection_class.topics)
    return int(
        scalar(url, "SELECT coalesce(max(notification_id), 0) FROM ledger_events WHERE topic = ANY(%s)", (topics,))
    )


def webhooks_caught_up(url: str) -> bool:
    return webhooks_position(url) == last_webhook_event(url)


def deliveries(url: str) -> Counter[str]:
    with psycopg.connect(url) as conn:
        return Counter(kind for (kind,) in conn.execute("SELECT event_type FROM webhook_deliveries").fetchall())


def use_up(ledger: CouponLedger, retailer_id: UUID, code: str, times: int) -> None:
    create_coupon(ledger, retailer_id, code, PERCENTAGE, Decimal("10"), max_uses=times)
    for _ in range(times):
        apply(ledger, retailer_id, code, Decimal("40.00"))


def test_both_projections_come_from_one_subscription_that_decodes_each_event_once(
    database_url: str,
    env: dict[str, str],
    ledger: CouponLedger,
    retailer_id: UUID,
    store: WebhookStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store.create_endpoint(retailer_id, "http://127.0.0.1:9/hook", list(EVENT_KINDS), None)
    decoded: Counter[int] = Counter()
    decode = Mapper.to_domain_event

    def counting(self: Mapper[Any], stored: Any) -> Any:
        if isinstance(stored, Notification) and threading.current_thread() is not threading.main_thread():
            decoded[stored.id] += 1
        return decode(self, stored)

    monkeypatch.setattr(Mapper, "to_domain_event", counting)
    use_up(ledger, retailer_id, "SHARED", 3)
    leader = ProjectionLeader(database_url, env, poll_interval=0.2, projections=BOTH).start()
    try:
        wait_for(lambda: tracking_position(database_url) == head(database_url), 30, message="the coupons projection")
        wait_for(lambda: webhooks_caught_up(database_url), 30, message="webhooks")
        assert projection_listeners(database_url) == 1  # one subscription, not one per projection
    finally:
        leader.stop()
    assert set(decoded) == set(range(1, head(database_url) + 1))
    assert set(decoded.values()) == {1}, "an event was decoded more than once"
    assert uses_count(database_url, coupon_id_for(retailer_id, "SHARED")) == 3
    assert deliveries(database_url)["coupon.exhausted"] == 1


def test_a_projection_behind_the_other_catches_up_and_neither_applies_an_event_twice(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID, store: WebhookStore
) -> None:
    store.create_endpoint(retailer_id, "http://127.0.0.1:9/hook", list(EVENT_KINDS), None)
    use_up(ledger, retailer_id, "AHEAD", 2)
    project_to_head(env, database_url)  # the coupons projection is at the head, the webhooks' at the start
    use_up(ledger, retailer_id, "LATER", 2)
    assert webhooks_position(database_url) == 0 < tracking_position(database_url) < head(database_url)
    leader = ProjectionLeader(database_url, env, poll_interval=0.2, projections=BOTH).start()
    try:
        wait_for(lambda: tracking_position(database_url) == head(database_url), 30, message="the coupons projection")
        wait_for(lambda: webhooks_caught_up(database_url), 30, message="webhooks")
        assert leader.is_leader.is_set()  # no claim failed: the coupons projection skipped what it had
    finally:
        leader.stop()
    assert uses_count(database_url, coupon_id_for(retailer_id, "AHEAD")) == 2
    assert uses_count(database_url, coupon_id_for(retailer_id, "LATER")) == 2
    assert deliveries(database_url)["coupon.exhausted"] == 2


def test_a_leader_runs_the_projections_whose_locks_it_holds_and_takes_the_rest_once_freed(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID, store: WebhookStore
) -> None:
    store.create_endpoint(retailer_id, "http://127.0.0.1:9/hook", list(EVENT_KINDS), None)
    use_up(ledger, retailer_id, "LOCKED", 2)
    with psycopg.connect(database_url, autocommit=True) as other:  # another process leads the coupons projection
        other.execute("SELECT pg_advisory_lock(%s)", (LEADER_LOCK_KEY,))
        leader = ProjectionLeader(database_url, env, poll_interval=0.2, projections=BOTH).start()
        try:
            wait_for(lambda: webhooks_caught_up(database_url), 30, message="webhooks")
            assert tracking_position(database_url) == 0
            other.execute("SELECT pg_advisory_unlock(%s)", (LEADER_LOCK_KEY,))
            wait_for(lambda: tracking_position(database_url) == head(database_url), 30, message="coupons, once freed")
            use_up(ledger, retailer_id, "AFTER", 1)
            wait_for(lambda: tracking_position(database_url) == head(database_url), 30, message="both, after")
            wait_for(lambda: webhooks_caught_up(database_url), 30, message="hooks")
        finally:
            leader.stop()
    assert deliveries(database_url)["coupon.exhausted"] == 2
    assert uses_count(database_url, coupon_id_for(retailer_id, "LOCKED")) == 2


def test_the_outbox_goes_on_when_the_coupons_projection_stops_at_an_event_it_cannot_hold(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID, store: WebhookStore
) -> None:
    store.create_endpoint(retailer_id, "http://127.0.0.1:9/hook", list(EVENT_KINDS), None)
    bad = Coupon(
        retailer_id=retailer_id,
        code="HUGE",
        discount_type="fixed",
        discount_value=Decimal("1E+20"),  # past every check: numeric(14,2) cannot hold it
        min_order_value=None,
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        max_uses=None,
        is_active=True,
    )
    ledger.save(bad)
    poisoned_at = head(database_url)
    leader = ProjectionLeader(database_url, env, poll_interval=0.2, projections=BOTH).start()
    try:
        wait_for(lambda: leader.stopped_on is not None, 30, message="the coupons projection to stop")
        use_up(ledger, retailer_id, "GOESON", 2)
        wait_for(lambda: webhooks_caught_up(database_url), 30, message="webhooks")
        assert leader.is_leader.is_set()
    finally:
        leader.stop()
    assert tracking_position(database_url) == poisoned_at - 1
    assert deliveries(database_url)["coupon.exhausted"] == 1


def test_a_leader_wakes_its_subscription_every_poll_so_a_missed_notify_delays_an_event_one_poll_at_most(
    database_url: str, env: dict[str, str]
) -> None:
    # The library's subscription reads the log before its LISTEN takes effect; an event committed in
    # between gets no NOTIFY it hears. The leader's own NOTIFY each poll makes the subscription read again.
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN ledger_events")
        leader = ProjectionLeader(database_url, env, poll_interval=0.2, projections=BOTH).start()
        try:
            wait_for(lambda: leader.is_leader.is_set(), 30, message="the leader running")
            heard = list(listener.notifies(timeout=10, stop_after=2))  # nothing is saved meanwhile
        finally:
            leader.stop()
    assert len(heard) == 2
