"""The events table on PostgreSQL: append-only in the database itself; schema.sql is safe to re-apply."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterator
from decimal import Decimal
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from api.database import apply_schema, eventsourcing_env, open_ledger
from ledger.application import CouponLedger
from ledger.domain import Coupon
from ledger.event_store import frozen
from tests.support.commands import apply, create_coupon, deactivate
from tests.support.postgres import race, run_cli, scalar

MUTATIONS = {
    "update": "UPDATE ledger_events SET state = NULL",
    "update-version": "UPDATE ledger_events SET originator_version = originator_version + 100",
    "delete": "DELETE FROM ledger_events",
    "truncate": "TRUNCATE ledger_events",
    "truncate-cascade": "TRUNCATE ledger_events CASCADE",
}


@pytest.fixture
def ledger(database_url: str) -> Iterator[CouponLedger]:
    ledger = open_ledger(eventsourcing_env(database_url, pool_size=1, max_overflow=2))
    yield ledger
    ledger.close()


def snapshot_of_events(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT originator_id, originator_version, topic, state, notification_id FROM ledger_events"
            " ORDER BY notification_id"
        ).fetchall()


def record_some_history(ledger: CouponLedger) -> Coupon:
    retailer_id = uuid4()
    coupon = create_coupon(ledger, retailer_id, "HISTORY", "percentage", Decimal("20"), max_uses=5)
    apply(ledger, retailer_id, "HISTORY", Decimal("50"))
    deactivate(ledger, retailer_id, "HISTORY")
    return coupon


@pytest.mark.parametrize("statement", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_the_database_rejects_any_change_to_recorded_events(
    database_url: str, ledger: CouponLedger, statement: str
) -> None:
    record_some_history(ledger)
    before = snapshot_of_events(database_url)
    assert len(before) == 4

    with psycopg.connect(database_url, autocommit=True) as conn, pytest.raises(psycopg.Error) as rejected:
        conn.execute(statement)  # type: ignore[arg-type]

    assert "append-only" in str(rejected.value)
    assert snapshot_of_events(database_url) == before


def test_the_database_rejects_a_second_event_at_a_recorded_version(database_url: str, ledger: CouponLedger) -> None:
    coupon = record_some_history(ledger)
    before = snapshot_of_events(database_url)

    with psycopg.connect(database_url, autocommit=True) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "INSERT INTO ledger_events (originator_id, originator_version, topic, state, prev_hash, hash)"
            " VALUES (%s, 2, 'x', '', '', '')",
            (coupon.id,),
        )

    assert snapshot_of_events(database_url) == before


def test_applying_the_schema_again_keeps_every_event_row_and_guard(database_url: str, ledger: CouponLedger) -> None:
    coupon = record_some_history(ledger)
    before = snapshot_of_events(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO retailers (id, name) VALUES (%s, 'kept')", (uuid4(),))
        conn.execute("INSERT INTO coupons_projection_tracking VALUES (%s, 3)", (CouponLedger.name,))

    apply_schema(database_url)
    apply_schema(database_url)

    assert snapshot_of_events(database_url) == before
    assert scalar(database_url, "SELECT count(*) FROM retailers WHERE name = 'kept'") == 1
    tracked = "SELECT notification_id FROM coupons_projection_tracking WHERE application_name = %s"
    assert scalar(database_url, tracked, (CouponLedger.name,)) == 3
    with psycopg.connect(database_url, autocommit=True) as conn, pytest.raises(psycopg.Error):
        conn.execute("DELETE FROM ledger_events")
    assert ledger.repository.get(coupon.id).version == 3
    retailer_id = uuid4()
    create_coupon(ledger, retailer_id, "AFTER", "fixed", Decimal("1"))
    assert apply(ledger, retailer_id, "AFTER", Decimal("10")).quote.final_total == Decimal("9")


def test_concurrent_schema_applications_all_succeed(database_url: str) -> None:
    results = race([lambda: apply_schema(database_url)] * 4)

    assert results == [None] * 4


def test_migrate_on_an_existing_database_exits_zero_and_keeps_its_events(
    database_url: str, ledger: CouponLedger
) -> None:
    record_some_history(ledger)
    before = snapshot_of_events(database_url)

    migrated = run_cli(database_url, "migrate")

    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert snapshot_of_events(database_url) == before


def test_notifications_are_the_librarys_for_every_selection(ledger: CouponLedger) -> None:
    """The subscriptions' read (five columns, in binary) gives what the library's SELECT * gives,
    whatever the start, stop, limit and topics, with the start included or not."""
    record_some_history(ledger)
    record_some_history(ledger)
    librarys = inspect.unwrap(PostgresApplicationRecorder.select_notifications)
    head = ledger.recorder.max_notification_id()
    assert head == 8
    topics = [get_topic(Coupon.Redeemed), get_topic(Coupon.Deactivated)]
    compared = 0
    for start, limit, stop, wanted, inclusive in itertools.product(
        [None, 1, 3, head], [1, 3, 500], [None, 5, head], [(), topics, ["no.such:Topic"]], [True, False]
    ):
        ours = ledger.recorder.select_notifications(start, limit, stop, wanted, inclusive_of_start=inclusive)
        assert ours == librarys(ledger.recorder, start, limit, stop, wanted, inclusive_of_start=inclusive)
        compared += bool(ours)
    assert compared > 100  # most selections are not empty: the comparison compares something
    every = ledger.recorder.select_notifications(None, 500)
    assert [n.id for n in every] == list(range(1, head + 1))
    assert all(isinstance(n.state, bytes) and n.state.startswith(b"{") for n in every)


@pytest.mark.parametrize("name", ["ledger_events", 'Odd "Name"', "émoji_é"])
def test_a_statement_rendered_once_is_the_text_psycopg_sends_for_it(database_url: str, name: str) -> None:
    statement = SQL("SELECT * FROM {}.{} WHERE notification_id > %s").format(Identifier("public"), Identifier(name))
    with psycopg.connect(database_url) as conn:
        assert frozen(statement) == statement.as_bytes(conn)
        conn.execute(f"CREATE TEMP TABLE {Identifier(name).as_string(conn)} (notification_id bigint)")
        conn.execute(SQL("INSERT INTO {} VALUES (1), (2)").format(Identifier(name)))
        temp = SQL("SELECT notification_id FROM {} WHERE notification_id > %s").format(Identifier(name))
        assert conn.execute(frozen(temp), (1,)).fetchall() == [(2,)]
