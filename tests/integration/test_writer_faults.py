"""The writer under faults, on PostgreSQL: a lock that is never granted, a deadlock broken by the
database, a full queue and a writer thread that dies are each answered, never waited on for ever."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.postgres import PostgresApplicationRecorder

from api.database import eventsourcing_env
from ledger.application import CouponLedger
from ledger.batch import Batch
from ledger.commands import InTransaction, Redeem
from ledger.domain import Order
from ledger.errors import LedgerBusy, LedgerError
from tests.support.commands import apply, create_coupon
from tests.support.postgres import ledger_with_clock

D = Decimal


@pytest.fixture
def ledger(database_url: str, monkeypatch: pytest.MonkeyPatch, open_ledgers: list[CouponLedger]) -> CouponLedger:
    monkeypatch.setenv("COUPON_LEDGER_LOCK_TIMEOUT", "0.5")
    opened = ledger_with_clock(eventsourcing_env(database_url, pool_size=2, max_overflow=4), partial(datetime.now, UTC))
    open_ledgers.append(opened)
    return opened


@pytest.fixture
def locked_row(database_url: str) -> Iterator[None]:
    """Another session holds a lock on a row of its own table until the test ends."""
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS fault_rows (id int PRIMARY KEY)")
        conn.execute("INSERT INTO fault_rows VALUES (1) ON CONFLICT DO NOTHING")
        conn.commit()
        conn.execute("SELECT id FROM fault_rows WHERE id = 1 FOR UPDATE")
        yield
        conn.rollback()


def test_a_work_waiting_on_a_row_lock_held_elsewhere_is_answered_busy_and_other_writes_go_on(
    ledger: CouponLedger, retailer_id: UUID, locked_row: None
) -> None:
    create_coupon(ledger, retailer_id, "LOCKED", "fixed", D("5"))
    create_coupon(ledger, retailer_id, "FREE", "fixed", D("5"))

    def wait_for_the_row(conn: Any, receipt: Any) -> None:
        conn.execute("SELECT id FROM fault_rows WHERE id = 1 FOR UPDATE")

    ledger.writer.max_attempts = 3
    stuck = InTransaction(Redeem(retailer_id, "LOCKED", Order.of(D("50.00"))), wait_for_the_row)
    with ThreadPoolExecutor(1) as pool, pytest.raises(LedgerBusy) as busy:
        pool.submit(ledger.execute, stuck).result(30)  # never a wait without end

    assert busy.value.code == "SERVICE_UNAVAILABLE"
    assert busy.value.details["reason"] == "lock_contention"
    assert ledger.get_coupon(retailer_id, "LOCKED").uses_count == 0
    assert not apply(ledger, retailer_id, "FREE", D("50.00")).replayed


def test_a_deadlock_broken_by_the_database_is_tried_again_like_a_version_conflict(
    ledger: CouponLedger, retailer_id: UUID
) -> None:
    create_coupon(ledger, retailer_id, "DEADLOCK", "fixed", D("5"))
    attempts: list[int] = []

    def deadlocks_once(conn: Any, receipt: Any) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            conn.execute("DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$")
        return "written"

    result = ledger.execute(InTransaction(Redeem(retailer_id, "DEADLOCK", Order.of(D("50.00"))), deadlocks_once))

    assert result == "written"
    assert len(attempts) == 2
    assert ledger.get_coupon(retailer_id, "DEADLOCK").uses_count == 1


def test_a_full_queue_is_answered_busy_at_once(ledger: CouponLedger, retailer_id: UUID) -> None:
    create_coupon(ledger, retailer_id, "QUEUED", "fixed", D("5"))
    writer = ledger.writer
    entered, released = threading.Event(), threading.Event()

    def hold(batch: Batch) -> None:
        entered.set()
        released.wait(30)

    held = writer.submit((), hold)
    assert entered.wait(30)
    writer.max_queue = 2
    writer._room = threading.BoundedSemaphore(2)
    waiting = [writer.submit((), lambda batch: "ok") for _ in range(2)]
    with pytest.raises(LedgerError) as full:
        apply(ledger, retailer_id, "QUEUED", D("50.00"))
    released.set()

    assert (full.value.code, full.value.details["reason"]) == ("SERVICE_UNAVAILABLE", "queue_full")
    assert full.value.details["retry_after"] == 1
    assert [f.result(30) for f in waiting] == ["ok", "ok"]
    held.result(30)


class WriterCrash(BaseException):
    """Not an Exception: nothing in the writer's batch handling catches it."""


def test_a_writer_thread_that_dies_answers_its_callers_and_is_started_again(
    ledger: CouponLedger, retailer_id: UUID
) -> None:
    create_coupon(ledger, retailer_id, "AFTERCRASH", "fixed", D("5"))

    def crash(batch: Batch) -> None:
        raise WriterCrash

    crashed = ledger.writer.submit((), crash)
    with pytest.raises(LedgerBusy) as answered:
        crashed.result(30)

    assert answered.value.details["reason"] == "writer_failed"
    assert not apply(ledger, retailer_id, "AFTERCRASH", D("50.00")).replayed
    assert ledger.writer.stats.restarts == 1
    assert ledger.writer.is_alive()


def test_every_connection_the_ledger_hands_out_waits_for_locks_and_runs_for_bounded_times(ledger: CouponLedger) -> None:
    recorder = ledger.recorder
    assert isinstance(recorder, PostgresApplicationRecorder)
    for _ in range(6):  # more than the pool holds: every connection of it, however it was made
        with recorder.datastore.get_connection() as conn:
            row = conn.execute("SELECT current_setting('lock_timeout') AS l, current_setting('statement_timeout') AS s")
            assert tuple(row.fetchone().values()) == ("500ms", "30s")
