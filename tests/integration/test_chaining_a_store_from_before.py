"""A store written before the hash chain: its events are linked once, at the next start, exactly as
the writer links new ones, and new events continue the chains."""

from __future__ import annotations

import hashlib
import json

import psycopg
import pytest

from api.database import apply_schema, eventsourcing_env, open_ledger
from ledger.application import RecordedEvent
from ledger.chain_migration import chain_unchained
from ledger.domain import coupon_id_for, customer_usage_id_for, redemption_id_for
from tests.support.commands import apply, create_coupon
from tests.support.ledger import RETAILER, D
from tests.support.stored_events import CREATED_AT, store, v1_created, v1_recorded, v1_redeemed


def recompute(events: list[RecordedEvent]) -> None:
    prev = "0" * 64
    for event in events:
        body = {"version": event.version, "type": event.type, "occurred_at": event.occurred_at, "data": event.data}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert event.prev_hash == prev
        prev = hashlib.sha256((prev + canonical).encode()).hexdigest()
        assert event.hash == prev


def write_unchained_history(database_url: str) -> None:
    """Events as a version before the hash chain stored them: no links, no owner."""
    ledger = open_ledger(eventsourcing_env(database_url))
    try:
        coupon = coupon_id_for(RETAILER, "OLDCOUPON")
        usage = customer_usage_id_for(coupon, "cust-1")
        events = [
            v1_created(ledger, "OLDCOUPON"),
            v1_redeemed(ledger, "OLDCOUPON", 2, redemption_id_for(RETAILER, "old-key")),
            v1_recorded(ledger, "OLDCOUPON", "old-key"),
            v1_redeemed(ledger, "OLDCOUPON", 3, redemption_id_for(RETAILER, "unkeyed")),
            store(
                ledger,
                usage,
                1,
                "ledger.domain:CustomerUsage.Started",
                {
                    "timestamp": CREATED_AT,
                    "originator_topic": "ledger.domain:CustomerUsage",
                    "coupon_id": coupon,
                    "customer_id": "cust-1",
                },
            ),
        ]
    finally:
        ledger.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE ledger_events DROP CONSTRAINT ledger_events_chained")
        with conn.cursor() as curs:
            curs.executemany(
                "INSERT INTO ledger_events (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)",
                [(e.originator_id, e.originator_version, e.topic, e.state) for e in events],
            )


def test_a_store_from_before_is_chained_at_the_next_start_and_new_events_continue_its_chains(
    database_url: str,
) -> None:
    write_unchained_history(database_url)
    apply_schema(database_url)  # the next start: the CHECK is back, as NOT VALID
    ledger = open_ledger(eventsourcing_env(database_url))
    try:
        with psycopg.connect(database_url) as conn:
            rows = conn.execute("SELECT hash IS NOT NULL, retailer_id, code FROM ledger_events").fetchall()
            assert len(rows) == 5
            assert all(linked for linked, _, _ in rows)
            assert {(retailer, code) for _, retailer, code in rows} == {(RETAILER, "OLDCOUPON")}
            validated = conn.execute(
                "SELECT convalidated FROM pg_constraint WHERE conname = 'ledger_events_chained'"
            ).fetchone()
            assert validated == (True,)
        recompute(ledger.coupon_events(RETAILER, "OLDCOUPON"))
        assert chain_unchained(ledger.recorder, ledger.mapper.to_domain_event) == 0  # once only

        apply(ledger, RETAILER, "OLDCOUPON", D("50.00"))
        events = ledger.coupon_events(RETAILER, "OLDCOUPON")
        assert [e.version for e in events] == [1, 2, 3, 4]
        recompute(events)
    finally:
        ledger.close()


def test_what_an_event_recorded_cannot_be_changed_once_it_is_linked(database_url: str) -> None:
    ledger = open_ledger(eventsourcing_env(database_url))
    try:
        create_coupon(ledger, RETAILER, "FIXED1", "fixed", D("5.00"))
    finally:
        ledger.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in (
            "UPDATE ledger_events SET state = state || '\\x20'::bytea",
            "UPDATE ledger_events SET hash = prev_hash",
            "UPDATE ledger_events SET retailer_id = gen_random_uuid()",
            "DELETE FROM ledger_events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
