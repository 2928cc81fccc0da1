"""The `reservations` read model: one row per hold, written by the coupons projection in
its batches. Each hold event gives the row of its Reservation aggregate; a history cut into one
batch, into batches of one event, or rebuilt from zero (`rebuild()` and `coupon-ledger rebuild`)
gives the same rows; the coupons list's status counts live holds exactly like Coupon.status."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, Tracking
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from api.database import eventsourcing_env
from ledger.application import CouponLedger
from ledger.domain import Coupon, Reservation
from ledger.errors import LedgerError
from projections.coupons import (
    STATUS_SQL,
    CouponChanges,
    CouponsProjection,
    CouponsView,
    UnwritableEvent,
    construct_view,
)
from projections.rebuild import rebuild
from projections.runner import BatchingProjectionRunner
from tests.support.commands import apply, confirm, create_campaign, create_coupon, expire_reservations, release, reserve
from tests.support.ledger import campaign_codes
from tests.support.postgres import head, ledger_with_clock, run_cli, tracking_position

D = Decimal
NOW = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
RESERVATION_COLUMNS = (
    "id, retailer_id, coupon_id, code, customer_id, campaign_id, status, discount_amount, expires_at, created_at,"
    " ended_at, redemption_id"
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(database_url: str, clock: Clock, open_ledgers: list[CouponLedger]) -> CouponLedger:
    """A ledger on the test's database whose clock the test moves (at NOW until it does)."""
    ledger = ledger_with_clock(eventsourcing_env(database_url, pool_size=2, max_overflow=4), clock)
    open_ledgers.append(ledger)
    return ledger


@pytest.fixture
def view(env: dict[str, str]) -> Iterator[CouponsView]:
    view = construct_view(env)
    yield view
    view.datastore.close()


def project(env: dict[str, str], url: str, max_batch_size: int = 100_000) -> None:
    target = head(url)
    with BatchingProjectionRunner(
        application_class=CouponLedger,
        projection_class=CouponsProjection,
        view_class=CouponsView,
        env=env,
        max_batch_size=max_batch_size,
    ) as runner:
        runner.wait(target, timeout=60)


def reset_read_model(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM reservations")
        conn.execute("DELETE FROM coupons")
        conn.execute("DELETE FROM coupons_projection_tracking WHERE application_name <> '__migration__'")


def reservation_rows(url: str) -> dict[UUID, dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute(f"SELECT {RESERVATION_COLUMNS}, version FROM reservations").fetchall()
    return {row["id"]: row for row in rows}


def read_model(url: str) -> tuple[dict[UUID, dict[str, Any]], dict[UUID, dict[str, Any]]]:
    """Every column of every coupons row and reservations row."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        coupons = conn.execute("SELECT * FROM coupons").fetchall()
    return {row["id"]: row for row in coupons}, reservation_rows(url)


def row_of(reservation: Reservation) -> dict[str, Any]:
    """The row the read model should hold for this Reservation aggregate."""
    return {
        "id": reservation.id,
        "retailer_id": reservation.retailer_id,
        "coupon_id": reservation.coupon_id,
        "code": reservation.code,
        "customer_id": reservation.customer_id,
        "campaign_id": reservation.campaign_id,
        "status": reservation.status,
        "discount_amount": reservation.discount_amount,
        "expires_at": reservation.expires_at,
        "created_at": reservation.created_on,
        "ended_at": reservation.ended_at,
        "redemption_id": reservation.redemption_id,
        "version": reservation.version,
    }


def test_each_hold_event_gives_the_row_of_its_reservation(
    database_url: str, env: dict[str, str], ledger: CouponLedger, clock: Clock, retailer_id: UUID
) -> None:
    create_coupon(ledger, retailer_id, "HOLDME", "percentage", D("10"), max_uses=10)
    campaign = create_campaign(
        ledger,
        retailer_id,
        "Holds",
        "hld",
        1,
        {"discount_type": "fixed", "discount_value": D("2.00")},
        max_redemptions=5,
    )
    (campaign_code,) = campaign_codes(ledger, campaign.id)

    held = reserve(ledger, retailer_id, "HOLDME", D("80.00"), customer_id="c-1", ttl_seconds=600)
    confirmed = reserve(ledger, retailer_id, "holdme", D("50.00"), order_id="cart-7", ttl_seconds=600)
    receipt = confirm(ledger, retailer_id, confirmed.reservation_id, order_id="order-7")
    released = reserve(ledger, retailer_id, "HOLDME", D("40.00"), customer_id="c-2", ttl_seconds=600)
    release(ledger, retailer_id, released.reservation_id)
    expired = reserve(ledger, retailer_id, "HOLDME", D("30.00"), ttl_seconds=60)
    in_campaign = reserve(ledger, retailer_id, campaign_code, D("20.00"), idempotency_key="k-1", ttl_seconds=900)
    clock.now = NOW + timedelta(seconds=61)
    assert expire_reservations(ledger, [expired.reservation_id, held.reservation_id]) == 1  # only the one past TTL
    project(env, database_url)

    rows = reservation_rows(database_url)
    holds = [held, confirmed, released, expired, in_campaign]
    assert set(rows) == {h.reservation_id for h in holds}
    for hold in holds:
        assert rows[hold.reservation_id] == row_of(ledger.get_reservation(retailer_id, hold.reservation_id))
    statuses = {h.reservation_id: rows[h.reservation_id]["status"] for h in holds}
    assert list(statuses.values()) == ["held", "confirmed", "released", "expired", "held"]
    assert rows[confirmed.reservation_id]["redemption_id"] == receipt.redemption_id
    assert rows[held.reservation_id]["ended_at"] is None and rows[held.reservation_id]["customer_id"] == "c-1"
    assert rows[held.reservation_id]["discount_amount"] == D("8.00")
    assert rows[held.reservation_id]["expires_at"] == NOW + timedelta(seconds=600)
    assert all(rows[h.reservation_id]["ended_at"] is not None for h in (confirmed, released, expired))
    assert rows[in_campaign.reservation_id]["campaign_id"] == campaign.id
    assert rows[in_campaign.reservation_id]["code"] == campaign_code
    # The confirmed hold is a use: the coupons row counts it, once.
    with psycopg.connect(database_url) as conn:
        uses = conn.execute("SELECT uses_count FROM coupons WHERE code = 'HOLDME'").fetchone()
    assert uses == (1,)


def hold_history(ledger: CouponLedger, clock: Clock, retailer_id: UUID) -> list[UUID]:
    """Holds made, confirmed, released and expired, several on one coupon, in interleaved saves."""
    create_coupon(ledger, retailer_id, "BUSY", "fixed", D("5.00"), max_uses=6)
    create_coupon(ledger, retailer_id, "OPEN", "percentage", D("20"))
    ids = [reserve(ledger, retailer_id, "BUSY", D("50.00"), ttl_seconds=60 * (i + 1)).reservation_id for i in range(4)]
    ids.append(reserve(ledger, retailer_id, "OPEN", D("10.00"), customer_id="ann", ttl_seconds=30).reservation_id)
    confirm(ledger, retailer_id, ids[0])
    release(ledger, retailer_id, ids[1])
    apply(ledger, retailer_id, "BUSY", D("50.00"))
    replaced = reserve(ledger, retailer_id, "OPEN", D("10.00"), customer_id="ann", ttl_seconds=600, release=ids[4])
    ids.append(replaced.reservation_id)
    clock.now = NOW + timedelta(seconds=200)  # ids[2] (180 s) past its TTL, ids[3] (240 s) live
    expire_reservations(ledger, ids)
    ids.append(reserve(ledger, retailer_id, "BUSY", D("50.00"), ttl_seconds=5).reservation_id)
    confirm(ledger, retailer_id, ids[3])
    return ids


def test_one_batch_batches_of_one_event_and_a_rebuild_give_the_same_rows(
    database_url: str, env: dict[str, str], ledger: CouponLedger, clock: Clock, retailer_id: UUID, view: CouponsView
) -> None:
    first = create_coupon(ledger, retailer_id, "EARLY", "fixed", D("5.00"), max_uses=2)
    early = reserve(ledger, retailer_id, "EARLY", D("50.00"), ttl_seconds=60)
    project(env, database_url)  # a hold made before the batch that ends it
    confirm(ledger, retailer_id, early.reservation_id)
    ids = hold_history(ledger, clock, retailer_id)
    project(env, database_url)  # one batch: holds made and ended in it, and one made before it
    batched = read_model(database_url)
    assert batched[1][early.reservation_id]["status"] == "confirmed"
    assert batched[0][first.id]["uses_count"] == 1
    for reservation_id in [early.reservation_id, *ids]:
        assert batched[1][reservation_id] == row_of(ledger.get_reservation(retailer_id, reservation_id))

    reset_read_model(database_url)
    project(env, database_url, max_batch_size=1)
    assert read_model(database_url) == batched

    assert rebuild(ledger, view) == head(database_url) == tracking_position(database_url)
    assert read_model(database_url) == batched

    with psycopg.connect(database_url, autocommit=True) as conn:  # a read model gone wrong
        conn.execute("UPDATE reservations SET status = 'released' WHERE status = 'held'")
        conn.execute("DELETE FROM coupons WHERE code = 'BUSY'")
    result = run_cli(database_url, "rebuild")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"rebuilt through event {head(database_url)}" in result.stdout
    assert read_model(database_url) == batched
    assert tracking_position(database_url) == head(database_url)


class GatedView(CouponsView):
    """Writes a batch only once the gate is open (the batch is read, its claim not made yet)."""

    gate = threading.Event()
    waiting = threading.Event()

    def record_batch(self, changes: CouponChanges, first_notification_id: int, tracking: Tracking) -> None:
        type(self).waiting.set()
        assert type(self).gate.wait(30)
        super().record_batch(changes, first_notification_id, tracking)


def test_a_rebuild_while_the_projection_runs_is_never_counted_twice_by_it(
    database_url: str, env: dict[str, str], ledger: CouponLedger, clock: Clock, retailer_id: UUID, view: CouponsView
) -> None:
    ids = hold_history(ledger, clock, retailer_id)
    GatedView.gate.set()
    live = BatchingProjectionRunner(
        application_class=CouponLedger, projection_class=CouponsProjection, view_class=GatedView, env=env
    )
    live.__enter__()
    try:
        live.wait(head(database_url), timeout=60)
        GatedView.gate.clear()
        GatedView.waiting.clear()
        more = reserve(ledger, retailer_id, "BUSY", D("50.00"), ttl_seconds=60)
        release(ledger, retailer_id, ids[-1])
        apply(ledger, retailer_id, "OPEN", D("10.00"))
        assert GatedView.waiting.wait(30)  # the live runner holds a batch of these, not written yet
        assert rebuild(ledger, view) == head(database_url)  # ... and the rebuild writes them first
        GatedView.gate.set()
        assert live.is_interrupted.wait(30)  # its claim fails: nothing counted twice
        with pytest.raises(IntegrityError, match="already processed"):
            live.run_forever(timeout=1)
    finally:
        GatedView.gate.set()
        with suppress(IntegrityError):  # the error its processing thread ended with, again
            live.__exit__(None, None, None)

    rebuilt = read_model(database_url)
    assert rebuilt[1][more.reservation_id]["status"] == "held"
    assert rebuilt[1][ids[-1]]["status"] == "released"
    assert tracking_position(database_url) == head(database_url)
    later = reserve(ledger, retailer_id, "OPEN", D("10.00"))
    project(env, database_url)  # a runner started again (the leader does that) carries on from there
    assert reservation_rows(database_url)[later.reservation_id]["status"] == "held"
    assert read_model(database_url)[0] == {**rebuilt[0], **read_model(database_url)[0]}
    rebuild(ledger, view)
    after = read_model(database_url)
    project(env, database_url)
    assert read_model(database_url) == after


def test_rebuild_of_an_empty_log_empties_the_read_model(
    database_url: str, env: dict[str, str], ledger: CouponLedger, view: CouponsView
) -> None:
    assert rebuild(ledger, view) == 0
    assert read_model(database_url) == ({}, {})
    assert tracking_position(database_url) == 0


def test_a_rebuild_that_meets_an_event_the_read_model_cannot_hold_names_it_and_changes_nothing(
    database_url: str, env: dict[str, str], ledger: CouponLedger, clock: Clock, retailer_id: UUID, view: CouponsView
) -> None:
    hold_history(ledger, clock, retailer_id)
    project(env, database_url)
    before = read_model(database_url), tracking_position(database_url)
    bogus = Coupon(  # past every check of the API and the ledger: a type the table refuses
        retailer_id=retailer_id,
        code="BOGUS",
        discount_type="bogus",
        discount_value=D("5.00"),
        min_order_value=None,
        expires_at=None,
        max_uses=None,
        is_active=True,
    )
    ledger.save(bogus)
    reserve(ledger, retailer_id, "OPEN", D("10.00"))

    with pytest.raises(UnwritableEvent) as raised:
        rebuild(ledger, view, page_size=7)
    assert (raised.value.originator_id, raised.value.originator_version) == (bogus.id, 1)
    assert (read_model(database_url), tracking_position(database_url)) == before
    result = run_cli(database_url, "rebuild")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"originator_id={bogus.id}" in result.stderr and "nothing was changed" in result.stderr
    assert (read_model(database_url), tracking_position(database_url)) == before


# --- any history, cut into any batches ------------------------------------------------------------------

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "reserve", "confirm", "release", "expire", "apply", "later"]),
        st.integers(0, 9),  # which earlier hold (confirm, release) / which coupon (reserve, apply)
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS, max_batch_size=st.integers(1, 12))
def test_any_hold_history_cut_into_any_batches_gives_the_rows_of_the_aggregates(
    database_url: str,
    env: dict[str, str],
    ledger: CouponLedger,
    clock: Clock,
    operations: list[tuple[str, int]],
    max_batch_size: int,
) -> None:
    retailer_id = uuid4()  # every example has coupons of its own in the shared database
    clock.now = NOW
    codes = ["LIMITED", "FREE"]
    create_coupon(ledger, retailer_id, "LIMITED", "fixed", D("5.00"), max_uses=3)
    create_coupon(ledger, retailer_id, "FREE", "fixed", D("5.00"))
    holds: list[UUID] = []
    for operation, index in operations:
        with suppress(LedgerError):  # refused by the rules: no event, as in production
            if operation == "reserve":
                holds.append(reserve(ledger, retailer_id, codes[index % 2], D("50.00"), ttl_seconds=60).reservation_id)
            elif operation == "apply":
                apply(ledger, retailer_id, codes[index % 2], D("50.00"))
            elif operation == "later":
                clock.now += timedelta(seconds=45)
            elif holds and operation == "confirm":
                confirm(ledger, retailer_id, holds[index % len(holds)])
            elif holds and operation == "release":
                release(ledger, retailer_id, holds[index % len(holds)])
            elif holds:
                expire_reservations(ledger, holds)

    project(env, database_url, max_batch_size=max_batch_size)

    rows = {i: row for i, row in reservation_rows(database_url).items() if i in set(holds)}
    assert rows == {i: row_of(ledger.get_reservation(retailer_id, i)) for i in holds}
    with psycopg.connect(database_url) as conn:
        uses = dict(conn.execute("SELECT code, uses_count FROM coupons WHERE retailer_id = %s", (retailer_id,)))
    assert uses == {code: ledger.get_coupon(retailer_id, code).uses_count for code in codes}
    assert tracking_position(database_url) == head(database_url)


# --- the coupons list's status -------------------------------------------------------------------------


def test_the_status_filter_counts_live_holds_exactly_like_coupon_status(
    database_url: str, env: dict[str, str], ledger: CouponLedger, clock: Clock, retailer_id: UUID, view: CouponsView
) -> None:
    create_coupon(ledger, retailer_id, "TWOUSES", "fixed", D("5.00"), max_uses=2)
    create_coupon(ledger, retailer_id, "ONEUSE", "fixed", D("5.00"), max_uses=1)
    create_coupon(ledger, retailer_id, "ENDLESS", "fixed", D("5.00"))
    create_coupon(ledger, retailer_id, "RELEASED", "fixed", D("5.00"), max_uses=1)
    create_coupon(ledger, retailer_id, "CONFIRMED", "fixed", D("5.00"), max_uses=1)
    apply(ledger, retailer_id, "TWOUSES", D("50.00"))
    reserve(ledger, retailer_id, "TWOUSES", D("50.00"), ttl_seconds=600)  # 1 use + 1 live hold: used up
    reserve(ledger, retailer_id, "ONEUSE", D("50.00"), ttl_seconds=300)  # 1 live hold: used up
    reserve(ledger, retailer_id, "ENDLESS", D("50.00"), ttl_seconds=300)  # no max_uses: never
    release(ledger, retailer_id, reserve(ledger, retailer_id, "RELEASED", D("50.00")).reservation_id)
    confirm(ledger, retailer_id, reserve(ledger, retailer_id, "CONFIRMED", D("50.00")).reservation_id)
    project(env, database_url)

    def listed(status: str, at: datetime) -> list[str]:
        return [row.code for row in view.list_coupons(retailer_id, at, status, None, 100)]

    def statuses(at: datetime) -> dict[str, str]:
        return {row.code: row.status for row in view.list_coupons(retailer_id, at, None, None, 100)}

    def aggregates(at: datetime) -> dict[str, str]:
        return {code: ledger.get_coupon(retailer_id, code).status(at) for code in statuses(at)}

    assert listed("count_expired", NOW) == ["CONFIRMED", "ONEUSE", "TWOUSES"]
    assert listed("active", NOW) == ["ENDLESS", "RELEASED"]
    # Past ONEUSE's hold TTL (300 s), before TWOUSES's (600 s): nothing recorded, ONEUSE is active again.
    assert listed("count_expired", NOW + timedelta(seconds=300)) == ["CONFIRMED", "TWOUSES"]
    assert listed("active", NOW + timedelta(seconds=300)) == ["ENDLESS", "ONEUSE", "RELEASED"]
    assert listed("count_expired", NOW + timedelta(seconds=600)) == ["CONFIRMED"]
    for at in (NOW, NOW + timedelta(seconds=299), NOW + timedelta(seconds=300), NOW + timedelta(seconds=601)):
        assert statuses(at) == aggregates(at)

    clock.now = NOW + timedelta(seconds=700)
    expire_reservations(ledger, [row.id for row in view_holds(view, retailer_id)])  # what the sweeper does
    project(env, database_url)
    assert statuses(NOW) == {  # recorded as expired, the holds count at no time any more
        "CONFIRMED": "count_expired",
        "ENDLESS": "active",
        "ONEUSE": "active",
        "RELEASED": "active",
        "TWOUSES": "active",
    }


def view_holds(view: CouponsView, retailer_id: UUID) -> list[Any]:
    return [
        hold
        for hold in view.consistent_snapshot(CouponLedger.name).reservations.values()
        if hold.retailer_id == retailer_id
    ]


def plan(url: str, query: str, params: dict[str, Any]) -> str:
    with psycopg.connect(url) as conn:
        return "\n".join(row[0] for row in conn.execute(f"EXPLAIN {query}", params).fetchall())  # type: ignore[arg-type]


def test_the_status_and_the_sweeper_read_holds_through_their_partial_indexes(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:  # 200 coupons' holds, most of them ended
        conn.execute(
            "INSERT INTO reservations (id, retailer_id, coupon_id, code, status, discount_amount, expires_at,"
            " created_at, version)"
            " SELECT gen_random_uuid(), gen_random_uuid(), md5((i %% 200)::text)::uuid, 'CODE',"
            " (ARRAY['held', 'confirmed', 'released', 'expired'])[1 + i %% 4], 5, %s + i * interval '1 second', %s, 1"
            " FROM generate_series(1, 20000) AS i",
            (NOW, NOW),
        )
        conn.execute("ANALYZE reservations")
    status_plan = plan(database_url, f"SELECT {STATUS_SQL} FROM coupons", {"now": NOW})
    assert "reservations_held_by_coupon" in status_plan, status_plan
    sweep_plan = plan(
        database_url,
        "SELECT id FROM reservations WHERE status = 'held' AND expires_at <= %(now)s ORDER BY expires_at, id LIMIT 10",
        {"now": NOW + timedelta(hours=1)},
    )
    assert "reservations_held_by_expiry" in sweep_plan, sweep_plan
