"""`rebuild()` projects the log into fresh tables while the live ones keep serving and the live
projection keeps projecting, then swaps them in: every table of PROJECTED_TABLES comes out row for
row as the live projection made it (whatever tables the tuple names), with its indexes, constraints
and defaults; writes racing the rebuild are neither lost nor counted twice; statements prepared by
live connections keep working across the swap."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from api.database import eventsourcing_env
from ledger.application import CouponLedger
from ledger.errors import LedgerError
from ledger.event_store import sqlstate
from projections import rebuild as rebuild_module
from projections.coupons import CouponsProjection, CouponsView, construct_view
from projections.leader import ProjectionLeader
from projections.rebuild import SCRATCH_SCHEMA, rebuild
from projections.runner import BatchingProjectionRunner
from projections.tables import PROJECTED_TABLES
from tests.support.commands import (
    apply,
    archive,
    confirm,
    create_campaign,
    create_coupon,
    deactivate,
    expire_reservations,
    release,
    reserve,
    reverse,
    update_coupon,
)
from tests.support.postgres import head, ledger_with_clock, tracking_position, uses_count, wait_for

D = Decimal
NOW = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
TRACKING = "coupons_projection_tracking"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(database_url: str, clock: Clock, open_ledgers: list[CouponLedger]) -> CouponLedger:
    ledger = ledger_with_clock(eventsourcing_env(database_url, pool_size=4, max_overflow=8), clock)
    open_ledgers.append(ledger)
    return ledger


@pytest.fixture
def view(env: dict[str, str]) -> Iterator[CouponsView]:
    view = construct_view(env)
    yield view
    view.datastore.close()


def live_runner(env: dict[str, str]) -> BatchingProjectionRunner[CouponLedger, CouponsView]:
    return BatchingProjectionRunner(
        application_class=CouponLedger, projection_class=CouponsProjection, view_class=CouponsView, env=env
    )


def project(env: dict[str, str], url: str) -> None:
    with live_runner(env) as runner:
        runner.wait(head(url), timeout=60)


def table_rows(url: str, table: str) -> list[tuple[Any, ...]]:
    """Every column of every row, in one full order."""
    with psycopg.connect(url) as conn:
        return conn.execute(SQL("SELECT r.* FROM {} AS r ORDER BY r::text").format(Identifier(table))).fetchall()


def read_model(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the projection, and its tracking records."""
    return {table: table_rows(url, table) for table in (*PROJECTED_TABLES, TRACKING)}


def catalog(url: str, table: str) -> dict[str, list[tuple[Any, ...]]]:
    """What the table is, besides its rows: columns with their types, defaults and identity;
    indexes and constraints by name with their definitions; the sequences its columns own."""
    with psycopg.connect(url) as conn:
        oid = conn.execute("SELECT to_regclass(%s)::oid", (table,)).fetchone()
        assert oid is not None and oid[0] is not None, table
        return {
            "columns": conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod), attnotnull, attidentity, attgenerated,"
                " pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a"
                " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
                " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                oid,
            ).fetchall(),
            "indexes": conn.execute(
                "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s ORDER BY 1",
                oid,
            ).fetchall(),
            "constraints": conn.execute(
                "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s ORDER BY 1",
                oid,
            ).fetchall(),
            "sequences": conn.execute(
                "SELECT s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'"
                " WHERE d.refobjid = %s ORDER BY 1",
                oid,
            ).fetchall(),
        }


def table_oids(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute("SELECT to_regclass(%s)::oid", (table,)).fetchone()[0]  # type: ignore[index]
            for table in (*PROJECTED_TABLES, TRACKING)
        }


def scratch_left(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (SCRATCH_SCHEMA,)).fetchone() == (True,)


def every_kind_of_history(ledger: CouponLedger, clock: Clock, retailer_id: UUID) -> None:
    """Creates, redemptions, reversals, holds confirmed, released and expired, a campaign, a
    PATCH, a deactivation and an archive."""
    create_coupon(ledger, retailer_id, "TEN", "percentage", D("10"), max_uses=50, public=True)
    create_coupon(
        ledger,
        retailer_id,
        "FIVE",
        "fixed",
        D("5.00"),
        min_order_value=D("20.00"),
        max_uses_per_customer=3,
    )
    create_coupon(ledger, retailer_id, "KITCHEN", "percentage", D("15"), scope={"category_ids": ["kitchen"]})
    create_coupon(ledger, retailer_id, "SHIP", "free_shipping", None, expires_at=NOW + timedelta(days=9))
    receipts = [apply(ledger, retailer_id, "TEN", D("100.00"), customer_id=f"c{n}") for n in range(4)]
    reverse(ledger, retailer_id, receipts[1].redemption_id, "cancelled")
    apply(ledger, retailer_id, "SHIP", D("30.00"), shipping_amount=D("4.99"))
    holds = [reserve(ledger, retailer_id, "TEN", D("50.00"), ttl_seconds=60 * (n + 1)).reservation_id for n in range(3)]
    confirm(ledger, retailer_id, holds[0])
    release(ledger, retailer_id, holds[1])
    clock.now = NOW + timedelta(seconds=150)  # holds[2] (180 s) live, then expired
    reserve(ledger, retailer_id, "TEN", D("50.00"), ttl_seconds=10)  # still held at the end
    clock.now = NOW + timedelta(seconds=200)
    expire_reservations(ledger, [holds[2]])
    campaign = create_campaign(
        ledger, retailer_id, "Spring", "SPRING", 4, {"discount_type": "fixed", "discount_value": D("2.00")}
    )
    assert campaign.id is not None
    update_coupon(ledger, retailer_id, "FIVE", {"max_uses": 9, "min_order_value": D("25.00")})
    apply(ledger, retailer_id, "FIVE", D("60.00"), customer_id="c0")
    deactivate(ledger, retailer_id, "SHIP")
    archive(ledger, retailer_id, "SHIP")


def test_a_rebuild_gives_every_projected_table_row_for_row_as_the_live_projection_in_fresh_tables(
    database_url: str, env: dict[str, str], ledger: CouponLedger, clock: Clock, retailer_id: UUID, view: CouponsView
) -> None:
    every_kind_of_history(ledger, clock, retailer_id)
    project(env, database_url)
    live = read_model(database_url)
    assert all(live[table] for table in PROJECTED_TABLES), "the history leaves rows in every table"
    shapes = {table: catalog(database_url, table) for table in (*PROJECTED_TABLES, TRACKING)}
    oids = table_oids(database_url)

    assert rebuild(ledger, view, page_size=4) == head(database_url)

    rebuilt = read_model(database_url)
    for table in (*PROJECTED_TABLES, TRACKING):
        assert rebuilt[table] == live[table], table
        assert catalog(database_url, table) == shapes[table], table
    assert all(oid != oids[table] for table, oid in table_oids(database_url).items()), "fresh tables swapped in"
    assert not scratch_left(database_url)
    project(env, database_url)  # the live projection carries on from the rebuilt tracking record
    assert read_model(database_url) == live


def test_while_a_rebuild_runs_the_live_projection_keeps_projecting_and_readers_see_whole_tables(
    database_url: str, env: dict[str, str], ledger: CouponLedger, clock: Clock, retailer_id: UUID, view: CouponsView
) -> None:
    every_kind_of_history(ledger, clock, retailer_id)
    project(env, database_url)
    before = read_model(database_url)
    coupon_id = ledger.get_coupon(retailer_id, "TEN").id
    uses_before = uses_count(database_url, coupon_id)
    seen: list[dict[str, list[tuple[Any, ...]]]] = []

    def during(_events: int, _head: int) -> None:
        if seen:
            return
        seen.append(read_model(database_url))  # a reader, mid-rebuild
        apply(ledger, retailer_id, "TEN", D("10.00"))
        view.wait_until_processed(ledger.name, head(database_url), timeout=15)  # the live projection projects it

    leader = ProjectionLeader(database_url, env, poll_interval=0.2).start()
    try:
        assert rebuild(ledger, view, page_size=3, progress=during) == head(database_url)
    finally:
        leader.stop()
    assert seen[0] == before
    assert (
        uses_before is not None and uses_count(database_url, coupon_id) == uses_before + 1
    )  # the one made mid-rebuild
    assert tracking_position(database_url) == head(database_url)


def reset_read_model(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for table in reversed(PROJECTED_TABLES):
            conn.execute(SQL("DELETE FROM {}").format(Identifier(table)))
        conn.execute(SQL("DELETE FROM {} WHERE application_name <> '__migration__'").format(Identifier(TRACKING)))


def test_writes_racing_a_rebuild_end_in_the_rows_of_a_replay_from_zero(
    database_url: str, env: dict[str, str], ledger: CouponLedger, clock: Clock, retailer_id: UUID, view: CouponsView
) -> None:
    every_kind_of_history(ledger, clock, retailer_id)
    codes = [f"RACE{n}" for n in range(4)]
    for code in codes:
        create_coupon(ledger, retailer_id, code, "fixed", D("1.00"), max_uses=1000)
    for n in range(60):  # a log long enough for many pages
        apply(ledger, retailer_id, codes[n % 4], D("10.00"))
    stop = threading.Event()
    failures: list[BaseException] = []

    def redeem_and_reverse(code: str) -> None:
        n = 0
        while not stop.is_set():
            try:
                receipt = apply(ledger, retailer_id, code, D("10.00"))
                n += 1
                if n % 3 == 0:
                    reverse(ledger, retailer_id, receipt.redemption_id)
            except LedgerError:
                continue
            except BaseException as error:
                failures.append(error)
                return

    def rebuild_while_writing(target: int) -> None:
        wait_for(lambda: head(database_url) > target, timeout=60, message="writes under way")
        heads: list[int] = []
        rebuild(ledger, view, page_size=25, progress=lambda _n, at: heads.append(at))
        assert heads[-1] > heads[0], "events were written while the rebuild ran"

    threads = [threading.Thread(target=redeem_and_reverse, args=(code,)) for code in codes]
    # The leader, as in every server: a live batch the swap overtook fails its claim, and it starts again.
    leader = ProjectionLeader(database_url, env, poll_interval=0.2).start()
    try:
        for thread in threads:
            thread.start()
        try:
            for target in (200, 400):  # one rebuild swapped in while the writes go on, then another
                rebuild_while_writing(target)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        assert not failures, failures
        view.wait_until_processed(ledger.name, head(database_url), timeout=60)
    finally:
        leader.stop()
    rebuilt = read_model(database_url)

    reset_read_model(database_url)
    project(env, database_url)  # the same log, projected from zero by the live projection
    assert read_model(database_url) == rebuilt

    topics = Counter[tuple[UUID, str]]()
    with psycopg.connect(database_url) as conn:
        for originator_id, topic in conn.execute("SELECT originator_id, topic FROM ledger_events"):
            topics[originator_id, topic.rsplit(".", 1)[-1]] += 1
        counts = dict(conn.execute("SELECT id, uses_count FROM coupons").fetchall())
    assert sum(topics[coupon_id, "Redeemed"] for coupon_id in counts) > 100  # the writes did race
    for coupon_id, count in counts.items():
        assert count == topics[coupon_id, "Redeemed"] - topics[coupon_id, "RedemptionReversed"], coupon_id


def test_statements_prepared_by_live_connections_keep_working_across_a_swap(
    database_url: str, env: dict[str, str], ledger: CouponLedger, clock: Clock, retailer_id: UUID, view: CouponsView
) -> None:
    every_kind_of_history(ledger, clock, retailer_id)
    project(env, database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        queries = {
            table: SQL("SELECT r.* FROM {} AS r ORDER BY r::text").format(Identifier(table))
            for table in PROJECTED_TABLES
        }
        before = {table: conn.execute(query, prepare=True).fetchall() for table, query in queries.items()}
        prepared = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
        assert prepared is not None and prepared[0] >= len(PROJECTED_TABLES)
        rebuild(ledger, view)
        assert {table: conn.execute(query, prepare=True).fetchall() for table, query in queries.items()} == before
        apply(ledger, retailer_id, "TEN", D("10.00"))
        project(env, database_url)  # the library's prepared tracking statements, on the new tables
        after = {table: conn.execute(query, prepare=True).fetchall() for table, query in queries.items()}
        assert after == {table: table_rows(database_url, table) for table in PROJECTED_TABLES}
        assert after["coupons"] != before["coupons"]


def test_a_table_added_to_the_projected_tables_keeps_its_indexes_constraints_defaults_and_sequence(
    database_url: str,
    env: dict[str, str],
    ledger: CouponLedger,
    clock: Clock,
    retailer_id: UUID,
    view: CouponsView,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE daily_probe (id bigserial PRIMARY KEY, coupon_id uuid REFERENCES coupons (id),"
            " day date NOT NULL DEFAULT current_date, label text NOT NULL DEFAULT 'x' CHECK (label <> ''),"
            " total numeric(14, 2) GENERATED ALWAYS AS (1.5) STORED, UNIQUE (coupon_id, day))"
        )
        conn.execute("CREATE INDEX daily_probe_by_label ON daily_probe (label) WHERE label <> 'x'")
        conn.execute("INSERT INTO daily_probe (label) VALUES ('before')")  # draws 1 from the sequence
    monkeypatch.setattr(rebuild_module, "PROJECTED_TABLES", (*PROJECTED_TABLES, "daily_probe"))
    every_kind_of_history(ledger, clock, retailer_id)
    project(env, database_url)
    shape = catalog(database_url, "daily_probe")

    rebuild(ledger, view)

    assert catalog(database_url, "daily_probe") == shape
    assert table_rows(database_url, "daily_probe") == []  # no event writes it: rebuilt empty
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("INSERT INTO daily_probe DEFAULT VALUES RETURNING id, label, total").fetchone()
        assert row == (2, "x", D("1.50"))  # the same sequence goes on
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("INSERT INTO daily_probe (coupon_id) VALUES (gen_random_uuid())")
    assert not scratch_left(database_url)


def test_a_rebuild_that_fails_leaves_the_live_tables_and_no_scratch_tables(
    database_url: str, env: dict[str, str], ledger: CouponLedger, clock: Clock, retailer_id: UUID, view: CouponsView
) -> None:
    every_kind_of_history(ledger, clock, retailer_id)
    project(env, database_url)
    before, oids = read_model(database_url), table_oids(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:  # a reference the drop must refuse
        conn.execute("CREATE VIEW coupon_codes AS SELECT code FROM coupons")

    with pytest.raises(Exception, match="depend") as raised:
        rebuild(ledger, view, page_size=5)
    assert sqlstate(raised.value) == "2BP01"  # dependent objects still exist

    assert (read_model(database_url), table_oids(database_url)) == (before, oids)
    assert not scratch_left(database_url)
    with suppress(Exception), psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP VIEW coupon_codes")
    assert rebuild(ledger, view) == head(database_url)
