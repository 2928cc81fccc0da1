"""The read model against the log, a page of rows at a time, each page read in one short snapshot
together with the tracking position it reflects.

Coupons: uses_count = Redeemed - RedemptionReversed through that position. The audit counted them
through the position verify started from; a page read once the projection has moved on is compared
with the counts at its own position, read from the store for the coupons that differ (few).
Holds: each `reservations` row equals its Reservation's events through the page's position (read
from the store for the page's ids). Coupons and holds the log created by then but the read model
lacks are found by one statement.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from typing import Any
from uuid import UUID

from projections.coupons import HELD, RESERVATION_COLUMNS, CouponsView, ReservationRow
from projections.verify.audit import Audit
from projections.verify.holds import ENDED_STATUS
from projections.verify.state import NOT_IN_VIEW
from projections.verify.store import EventStore

PAGE = 5000


def pages(view: CouponsView, application_name: str, query: str, page: int = PAGE) -> Iterator[tuple[int, list[Any]]]:
    """(tracking position, rows) of ``query`` (which takes the last id and a limit), in id order."""
    after = UUID(int=0)
    while True:
        with view.datastore.get_connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            position = view._max_tracking_id(application_name, conn.cursor()) or 0
            rows = conn.execute(query, (after, page)).fetchall()
        if rows:
            yield position, rows
        if len(rows) < page:
            return
        after = rows[-1]["id"]


def field_differences(found: Any, wanted: Any, names: list[str]) -> str:
    """``name found != wanted`` for each field in which a read-model row differs from the log's."""
    return ", ".join(
        f"{name} {getattr(found, name)} != {getattr(wanted, name)}"
        for name in names
        if getattr(found, name) != getattr(wanted, name)
    )


def check_coupons(audit: Audit, view: CouponsView, application_name: str) -> None:
    store = audit.store
    query = "SELECT id, uses_count FROM coupons WHERE id > %s ORDER BY id LIMIT %s"
    for position, rows in pages(view, application_name, query):
        for row in rows:
            coupon_id: UUID = row["id"]
            state = audit.coupons.get(coupon_id.int)
            expected = state.live_in_view if state is not None else NOT_IN_VIEW
            if position == audit.position and expected == row["uses_count"]:
                continue
            if position != audit.position:  # the projection moved on: the counts at its position
                created, expected = store.uses_through(coupon_id, position)
                expected = expected if created else NOT_IN_VIEW
                if expected == row["uses_count"]:
                    continue
            if expected == NOT_IN_VIEW:
                audit.violation(f"read model has coupon {coupon_id} that the event log does not")
            else:
                audit.violation(
                    f"{audit.label(coupon_id.int)}: read model uses_count {row['uses_count']} != {expected}"
                    f" Redeemed - RedemptionReversed events through notification {position}"
                )


def expected_row(events: list[Any]) -> ReservationRow | None:
    """The `reservations` row a Reservation's events make (None: no Held among them)."""
    held = next(iter(events), None)
    if held is None or held.originator_version != 1:
        return None
    status, ended_at, redemption_id = HELD, None, None
    for event in events[1:]:
        if type(event) in ENDED_STATUS:
            status, ended_at = ENDED_STATUS[type(event)], event.timestamp
            redemption_id = getattr(event, "redemption_id", redemption_id)
    return ReservationRow(
        id=held.originator_id,
        retailer_id=held.retailer_id,
        coupon_id=held.coupon_id,
        code=held.code,
        customer_id=held.customer_id,
        campaign_id=held.campaign_id,
        status=status,
        discount_amount=held.discount_amount,
        expires_at=held.expires_at,
        created_at=held.timestamp,
        ended_at=ended_at,
        redemption_id=redemption_id,
    )


def check_reservations(audit: Audit, view: CouponsView, application_name: str) -> None:
    store = audit.store
    query = f"SELECT {RESERVATION_COLUMNS} FROM reservations WHERE id > %s ORDER BY id LIMIT %s"
    names = [f.name for f in fields(ReservationRow)]
    for position, rows in pages(view, application_name, query):
        streams = store.streams((row["id"] for row in rows), through=position)
        for row in rows:
            found = ReservationRow(**row)
            wanted = expected_row(streams.get(found.id, []))
            if found == wanted:
                continue
            if wanted is None:
                audit.violation(
                    f"read model has hold {found.id} that the event log does not have through notification {position}"
                )
                continue
            differences = field_differences(found, wanted, names)
            audit.violation(
                f"read model hold {found.id}: {differences} (the Reservation's events through notification {position})"
            )


def check_unprojected(audit: Audit, store: EventStore) -> None:
    for kind, aggregate_id in store.unprojected(audit.position):
        if kind == "hold":
            audit.violation(f"read model lacks hold {aggregate_id} (projected through {audit.position})")
        else:
            audit.violation(f"read model lacks {audit.label(aggregate_id.int)} (projected through {audit.position})")
