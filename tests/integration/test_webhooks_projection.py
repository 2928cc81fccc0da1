"""The webhooks projection on PostgreSQL: which webhook events the log makes (a coupon used up, used
up again after a reversal, a campaign's budget reached, a hold expired), in log order, each once
per endpoint; projecting the same events again makes no second row."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from decimal import Decimal
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, Tracking
from psycopg_pool import ConnectionPool

from ledger.application import CouponLedger
from ledger.domain import FIXED, PERCENTAGE, Coupon, coupon_id_for
from projections.runner import BatchingProjectionRunner
from projections.webhooks.dispatcher import Dispatcher, DispatchSettings
from projections.webhooks.events import EVENT_KINDS
from projections.webhooks.projection import WebhooksProjection, WebhooksView
from projections.webhooks.store import WebhookStore
from tests.support.commands import (
    apply,
    create_campaign,
    create_coupon,
    deactivate,
    expire_reservations,
    reserve,
    reverse,
)
from tests.support.postgres import free_port, head, wait_for


@pytest.fixture
def store(database_url: str) -> Iterator[WebhookStore]:
    with ConnectionPool(database_url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        yield WebhookStore(pool)


def project_webhooks_to_head(env: dict[str, str], url: str) -> None:
    with BatchingProjectionRunner(
        application_class=CouponLedger, projection_class=WebhooksProjection, view_class=WebhooksView, env=env
    ) as runner:
        runner.wait(head(url), timeout=30)


def rows(url: str, endpoint_id: UUID) -> list[tuple[str, dict[str, object]]]:
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT event_type, payload FROM webhook_deliveries WHERE endpoint_id = %s ORDER BY position, ordinal",
            (endpoint_id,),
        ).fetchall()
    return [(kind, json.loads(payload)["data"]) for kind, payload in found]


def test_the_log_makes_each_kind_in_order_once(
    ledger: CouponLedger, env: dict[str, str], database_url: str, retailer_id: UUID, store: WebhookStore
) -> None:
    endpoint = store.create_endpoint(retailer_id, "http://127.0.0.1:9/hook", list(EVENT_KINDS), None)
    coupons_only = store.create_endpoint(retailer_id, "http://127.0.0.1:9/other", ["coupon.exhausted"], None)
    create_coupon(ledger, retailer_id, "TWICE", PERCENTAGE, Decimal("10"), max_uses=2)
    first = apply(ledger, retailer_id, "TWICE", Decimal("50.00"))
    apply(ledger, retailer_id, "TWICE", Decimal("50.00"))
    reverse(ledger, retailer_id, first.redemption_id, "cancelled")
    again = apply(ledger, retailer_id, "TWICE", Decimal("50.00"))  # used up a second time
    deactivate(ledger, retailer_id, "TWICE")
    campaign = create_campaign(
        ledger, retailer_id, "Spring", "SPR-", 2, {"discount_type": FIXED, "discount_value": Decimal("5")}, 2
    )
    with psycopg.connect(database_url) as conn:
        codes = conn.execute(
            "SELECT DISTINCT code FROM ledger_events WHERE retailer_id = %s AND code LIKE 'SPR-%%'", (retailer_id,)
        ).fetchall()
    assert len(codes) == 2
    for (code,) in codes:
        apply(ledger, retailer_id, code, Decimal("20.00"))
    create_coupon(ledger, retailer_id, "HELD", PERCENTAGE, Decimal("10"))
    hold = reserve(ledger, retailer_id, "HELD", Decimal("10.00"), ttl_seconds=1)
    time.sleep(1.1)
    assert expire_reservations(ledger, [hold.reservation_id]) == 1

    project_webhooks_to_head(env, database_url)
    made = rows(database_url, endpoint.id)
    kinds = [kind for kind, _ in made]
    assert kinds == [
        "coupon.created",
        "redemption.created",
        "redemption.created",
        "coupon.exhausted",
        "redemption.reversed",
        "redemption.created",
        "coupon.exhausted",
        "coupon.deactivated",
        "coupon.created",
        "coupon.created",
        "redemption.created",
        "redemption.created",
        "campaign.budget_exhausted",
        "coupon.created",
        "hold.expired",
    ]
    positions = [data["position"] for _, data in made]
    assert positions == sorted(positions)
    exhausted = [data for kind, data in made if kind == "coupon.exhausted"]
    assert [e["redemption_id"] for e in exhausted][1] == str(again.redemption_id)
    assert all(e["code"] == "TWICE" and e["coupon_id"] == str(coupon_id_for(retailer_id, "TWICE")) for e in exhausted)
    [budget] = [data for kind, data in made if kind == "campaign.budget_exhausted"]
    assert (budget["campaign_id"], budget["redemptions"], budget["max_redemptions"]) == (str(campaign.id), 2, 2)
    assert budget["discount_total"] == "10.00"
    [expired] = [data for kind, data in made if kind == "hold.expired"]
    assert (expired["code"], expired["reservation_id"]) == ("HELD", str(hold.reservation_id))
    assert [kind for kind, _ in rows(database_url, coupons_only.id)] == ["coupon.exhausted"] * 2

    # Projecting the same events again, from scratch, makes no second row.
    with psycopg.connect(database_url) as conn:
        count = conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone()
        conn.execute("DELETE FROM webhooks_projection_tracking WHERE application_name <> '__migration__'")
        conn.execute("TRUNCATE webhook_coupon_state, webhook_campaign_state")
    project_webhooks_to_head(env, database_url)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone() == count
    assert rows(database_url, endpoint.id) == made


def test_a_batch_already_projected_is_refused_and_writes_nothing(
    ledger: CouponLedger, env: dict[str, str], database_url: str, retailer_id: UUID, store: WebhookStore
) -> None:
    endpoint = store.create_endpoint(retailer_id, "http://127.0.0.1:9/hook", ["coupon.created"], None)
    create_coupon(ledger, retailer_id, "ONCEONLY", PERCENTAGE, Decimal("10"))
    project_webhooks_to_head(env, database_url)
    assert len(rows(database_url, endpoint.id)) == 1
    with BatchingProjectionRunner(
        application_class=CouponLedger, projection_class=WebhooksProjection, view_class=WebhooksView, env=env
    ) as runner:
        runner.wait(head(database_url), timeout=30)
        notifications = ledger.recorder.select_notifications(start=1, limit=1000)
        batch = [(ledger.mapper.to_domain_event(n), Tracking(CouponLedger.name, n.id)) for n in notifications]
        with pytest.raises(IntegrityError):
            runner.view.record_batch(batch)
    assert len(rows(database_url, endpoint.id)) == 1


def test_a_delivery_retried_past_its_window_is_failed_and_the_next_one_goes(
    ledger: CouponLedger, env: dict[str, str], database_url: str, retailer_id: UUID, store: WebhookStore
) -> None:
    refusing = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: every attempt is refused
    endpoint = store.create_endpoint(retailer_id, refusing, ["coupon.created", "coupon.deactivated"], None)
    create_coupon(ledger, retailer_id, "GIVEUP", PERCENTAGE, Decimal("10"))
    deactivate(ledger, retailer_id, "GIVEUP")
    project_webhooks_to_head(env, database_url)
    settings = DispatchSettings(
        workers=2, poll_interval=0.05, timeout=1, retry_base=0.05, retry_max=0.1, retry_window=1
    )
    dispatcher = Dispatcher(database_url, settings).start()
    try:
        listed = wait_for(
            lambda: (
                (d := store.deliveries(retailer_id, endpoint.id, None, None, 10))
                and all(x.status == "failed" for x in d)
                and d
            ),
            30,
        )
    finally:
        dispatcher.stop()
    first, second = sorted(listed, key=lambda d: d.event_type != "coupon.created")
    assert first.attempts >= 2 and second.attempts >= 1
    for delivery in listed:
        assert delivery.next_attempt_at is None and delivery.delivered_at is None
        assert delivery.last_status_code is None and "ConnectError" in (delivery.last_error or "")


def test_an_event_whose_webhooks_cannot_be_stored_is_skipped_naming_it_and_the_others_go_out(
    ledger: CouponLedger,
    env: dict[str, str],
    database_url: str,
    retailer_id: UUID,
    store: WebhookStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = store.create_endpoint(retailer_id, "http://127.0.0.1:9/hook", ["coupon.created"], None)
    create_coupon(ledger, retailer_id, "BEFORE", PERCENTAGE, Decimal("10"))
    poisoned = Coupon(  # past every check of the API: a code PostgreSQL text cannot hold
        retailer_id=retailer_id,
        code="NUL\x001",
        discount_type="fixed",
        discount_value=Decimal("5.00"),
        min_order_value=None,
        expires_at=None,
        max_uses=None,
        is_active=True,
    )
    ledger.save(poisoned)
    create_coupon(ledger, retailer_id, "AFTER", PERCENTAGE, Decimal("10"))
    with caplog.at_level(logging.ERROR, logger="projections.webhooks.projection"):
        project_webhooks_to_head(env, database_url)
    assert [data["code"] for _, data in rows(database_url, endpoint.id)] == ["BEFORE", "AFTER"]
    (line,) = [r.getMessage() for r in caplog.records if r.name == "projections.webhooks.projection"]
    assert f"originator_id={poisoned.id}" in line and "originator_version=1" in line
