"""`coupon-ledger verify` checks the invariants of holds: uses plus live holds within every
limit at every point of the history, each hold one Reservation confirmed at most once into a
redemption that exists, the holds kept open on coupons, customer usages and campaigns exactly the
Reservations still held, and the `reservations` read model equal to the Reservations.

As in test_verify_limits_and_reversals, each violation is planted by saving crafted events (the aggregates' own
event methods called past the rules that would refuse them), after a history that breaks nothing
and stays clean, so each test shows verify names exactly the violation it planted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import psycopg
import pytest

from api.database import eventsourcing_env
from ledger.application import CouponLedger
from ledger.domain import Campaign, Coupon, CustomerUsage, Reservation, customer_usage_id_for
from projections.coupons import CouponsView, construct_view
from projections.verify import verify
from tests.support.commands import apply, confirm, create_campaign, create_coupon, expire_reservations, release, reserve
from tests.support.ledger import campaign_codes
from tests.support.postgres import ledger_with_clock, project_to_head, run_cli
from tests.support.stored_events import crafted_redemption

D = Decimal
FIVE = D("5.00")


@pytest.fixture
def view(env: dict[str, str]) -> Iterator[CouponsView]:
    view = construct_view(env)
    yield view
    view.datastore.close()


@pytest.fixture
def later(database_url: str, open_ledgers: list[CouponLedger]) -> CouponLedger:
    """A ledger whose clock is an hour ahead: every hold of the test is past its TTL for it."""
    ledger = ledger_with_clock(
        eventsourcing_env(database_url, pool_size=1, max_overflow=2), lambda: datetime.now(UTC) + timedelta(hours=1)
    )
    open_ledgers.append(ledger)
    return ledger


def coupon_of(ledger: CouponLedger, retailer_id: UUID, code: str) -> Coupon:
    return ledger.get_coupon(retailer_id, code, archived=True)


def crafted_hold(
    ledger: CouponLedger, retailer_id: UUID, code: str, customer_id: str | None = None, seconds: int = 600
) -> UUID:
    """Hold ``code`` past every rule, recorded as the writer would: on the coupon, the Reservation
    and, where they apply, the customer's usage and the campaign, saved together."""
    coupon = coupon_of(ledger, retailer_id, code)
    reservation_id = uuid4()
    expires_at = datetime.now(UTC) + timedelta(seconds=seconds)
    coupon._record_hold(reservation_id=reservation_id, expires_at=expires_at)
    reservation = Reservation(
        id=reservation_id,
        retailer_id=retailer_id,
        coupon_id=coupon.id,
        code=coupon.code,
        idempotency_key=None,
        request_fingerprint="crafted",
        original_subtotal=D("50.00"),
        discount_amount=FIVE,
        final_total=D("45.00"),
        free_shipping=False,
        order_id=None,
        customer_id=customer_id,
        campaign_id=coupon.campaign_id,
        expires_at=expires_at,
    )
    changed: list[object] = [coupon, reservation]
    if customer_id is not None:
        usage_id = customer_usage_id_for(coupon.id, customer_id)
        usage = ledger._get(usage_id, CustomerUsage) or CustomerUsage(coupon_id=coupon.id, customer_id=customer_id)
        usage.hold(reservation_id, expires_at)
        changed.append(usage)
    if coupon.campaign_id is not None:
        campaign: Campaign = ledger.repository.get(coupon.campaign_id)
        campaign.hold(reservation_id, FIVE, expires_at)
        changed.append(campaign)
    ledger.save(*changed)  # type: ignore[arg-type]
    return reservation_id


def violations(ledger: CouponLedger, view: CouponsView) -> list[str]:
    return verify(ledger, view).violations


def only_violation(ledger: CouponLedger, view: CouponsView) -> str:
    found = violations(ledger, view)
    assert len(found) == 1, found
    return found[0]


def clean_history(ledger: CouponLedger, later: CouponLedger, retailer_id: UUID) -> list[UUID]:
    """Holds of every kind and end, on limited coupons, a customer's and a campaign's: no violation."""
    create_coupon(ledger, retailer_id, "FULL", "fixed", FIVE, max_uses=3, max_uses_per_customer=2)
    campaign = create_campaign(
        ledger, retailer_id, "Held", "hv", 2, {"discount_type": "fixed", "discount_value": FIVE}, max_redemptions=2
    )
    first, second = campaign_codes(ledger, campaign.id)
    holds = [
        reserve(ledger, retailer_id, "FULL", D("50.00"), customer_id="ann").reservation_id,
        reserve(ledger, retailer_id, "FULL", D("50.00"), customer_id="ann").reservation_id,
        reserve(ledger, retailer_id, "FULL", D("50.00"), customer_id="bob", ttl_seconds=60).reservation_id,
        reserve(ledger, retailer_id, first, D("50.00")).reservation_id,
        reserve(ledger, retailer_id, second, D("50.00"), ttl_seconds=60).reservation_id,
    ]
    confirm(ledger, retailer_id, holds[0], order_id="o-1")
    release(ledger, retailer_id, holds[1])
    confirm(ledger, retailer_id, holds[3])
    assert expire_reservations(later, holds) == 2  # bob's and the second code's (the held ones)
    # Their places are free again: a use, a hold and a confirmed hold take them.
    apply(ledger, retailer_id, "FULL", D("50.00"), customer_id="bob")
    holds.append(reserve(ledger, retailer_id, "FULL", D("50.00"), customer_id="ann").reservation_id)
    confirm(ledger, retailer_id, reserve(ledger, retailer_id, second, D("50.00")).reservation_id)
    return holds


def test_a_history_of_holds_is_clean_projected_or_not_and_verify_counts_them(
    database_url: str,
    env: dict[str, str],
    ledger: CouponLedger,
    later: CouponLedger,
    retailer_id: UUID,
    view: CouponsView,
) -> None:
    clean_history(ledger, later, retailer_id)
    report = verify(ledger, view)
    assert report.violations == []
    assert report.reservations == 7
    project_to_head(env, database_url)
    report = verify(ledger, view)
    assert report.violations == []
    assert report.projected_through == report.head
    result = run_cli(database_url, "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 holds" in result.stdout and "OK" in result.stdout


def test_a_hold_past_max_uses_is_named(
    ledger: CouponLedger, later: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    clean_history(ledger, later, retailer_id)
    create_coupon(ledger, retailer_id, "ONCE", "fixed", FIVE, max_uses=1)
    apply(ledger, retailer_id, "ONCE", D("50.00"))
    planted = crafted_hold(ledger, retailer_id, "ONCE")
    coupon = coupon_of(ledger, retailer_id, "ONCE")
    violation = only_violation(ledger, view)
    assert violation.startswith(f"coupon ONCE ({coupon.id}): hold {planted}")
    assert violation.endswith("made 1 live uses and 1 live holds, max_uses was 1")


def test_a_use_past_max_uses_because_of_live_holds_is_named_but_not_one_after_they_expired(
    database_url: str, ledger: CouponLedger, retailer_id: UUID, view: CouponsView, open_ledgers: list[CouponLedger]
) -> None:
    create_coupon(ledger, retailer_id, "HELDUP", "fixed", FIVE, max_uses=2)
    reserve(ledger, retailer_id, "HELDUP", D("50.00"))
    reserve(ledger, retailer_id, "HELDUP", D("50.00"))
    # Holds made an hour ago for a minute: past their TTL, unrecorded. They count at no time after.
    earlier = ledger_with_clock(
        eventsourcing_env(database_url, pool_size=1, max_overflow=2), lambda: datetime.now(UTC) - timedelta(hours=1)
    )
    open_ledgers.append(earlier)
    create_coupon(ledger, retailer_id, "LAPSED", "fixed", FIVE, max_uses=1)
    reserve(earlier, retailer_id, "LAPSED", D("50.00"), ttl_seconds=60)
    apply(ledger, retailer_id, "LAPSED", D("50.00"))
    assert violations(ledger, view) == []

    planted = crafted_redemption(ledger, retailer_id, "HELDUP")
    violation = only_violation(ledger, view)
    assert "HELDUP" in violation and str(planted) in violation
    assert "made 1 live uses and 2 live holds, max_uses was 2" in violation


def test_holds_past_the_per_customer_limit_and_the_campaign_budget_are_named(
    ledger: CouponLedger, later: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    clean_history(ledger, later, retailer_id)
    create_coupon(ledger, retailer_id, "PERHEAD", "fixed", FIVE, max_uses_per_customer=1)
    reserve(ledger, retailer_id, "PERHEAD", D("50.00"), customer_id="cy")
    planted = crafted_hold(ledger, retailer_id, "PERHEAD", customer_id="cy")
    violation = only_violation(ledger, view)
    assert violation.startswith("customer cy of coupon PERHEAD") and str(planted) in violation
    assert violation.endswith("made 0 live uses and 2 live holds, max_uses_per_customer was 1")

    campaign = create_campaign(
        ledger,
        retailer_id,
        "Budget",
        "bd",
        2,
        {"discount_type": "fixed", "discount_value": FIVE},
        max_discount_total=D("9.00"),
    )
    first, second = campaign_codes(ledger, campaign.id)
    reserve(ledger, retailer_id, first, D("50.00"))
    over_budget = crafted_hold(ledger, retailer_id, second)
    found = [v for v in violations(ledger, view) if v != violation]
    assert found == [
        f"campaign Budget ({campaign.id}): hold {over_budget} took live discounts to 10.00 with 10.00 held,"
        " max_discount_total 9.00"
    ]


def test_a_hold_confirmed_twice_or_into_a_redemption_that_does_not_exist_is_named(
    ledger: CouponLedger, later: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    clean_history(ledger, later, retailer_id)
    create_coupon(ledger, retailer_id, "TWICE", "fixed", FIVE)
    twice = reserve(ledger, retailer_id, "TWICE", D("50.00")).reservation_id
    receipt = confirm(ledger, retailer_id, twice)
    reservation: Reservation = ledger.repository.get(twice)
    again = uuid4()
    reservation.confirm(again, None)  # a second Confirmed event, as a buggy writer would record it
    ledger.save(reservation)
    found = violations(ledger, view)
    assert f"reservation {twice} is confirmed more than once (redemptions {receipt.redemption_id} and {again})" in found
    assert f"reservation {twice} is confirmed as redemption {again}, which is not recorded" in found
    assert all(str(twice) in v for v in found), found

    create_coupon(ledger, retailer_id, "PHANTOM", "fixed", FIVE)
    phantom = reserve(ledger, retailer_id, "PHANTOM", D("50.00")).reservation_id
    held: Reservation = ledger.repository.get(phantom)
    coupon = coupon_of(ledger, retailer_id, "PHANTOM")
    nowhere = uuid4()
    coupon.confirm_hold(held, nowhere, None)  # the use and the hold's end, but no Redemption
    held.confirm(nowhere, None)
    ledger.save(coupon, held)
    found = [v for v in violations(ledger, view) if str(twice) not in v]
    assert f"reservation {phantom} is confirmed as redemption {nowhere}, which is not recorded" in found
    assert f"redemption {nowhere} is not recorded on both its coupon and itself" in found
    assert len(found) == 2, found


def test_a_hold_ended_on_its_coupon_alone_or_on_its_reservation_alone_is_named(
    ledger: CouponLedger, later: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    clean_history(ledger, later, retailer_id)
    create_coupon(ledger, retailer_id, "HALF", "fixed", FIVE)
    on_coupon = reserve(ledger, retailer_id, "HALF", D("50.00")).reservation_id
    on_itself = reserve(ledger, retailer_id, "HALF", D("50.00")).reservation_id
    coupon = coupon_of(ledger, retailer_id, "HALF")
    coupon.release_hold(on_coupon)
    ledger.save(coupon)
    reservation: Reservation = ledger.repository.get(on_itself)
    reservation.release()
    ledger.save(reservation)

    assert sorted(violations(ledger, view)) == sorted(
        [
            f"hold {on_coupon}: its Reservation is held, but its coupon does not hold it",
            f"hold {on_itself}: its Reservation is released, but coupon {coupon.id} still holds it",
        ]
    )


def test_a_reservations_row_that_disagrees_with_its_reservation_is_named(
    database_url: str,
    env: dict[str, str],
    ledger: CouponLedger,
    later: CouponLedger,
    retailer_id: UUID,
    view: CouponsView,
) -> None:
    holds = clean_history(ledger, later, retailer_id)
    project_to_head(env, database_url)
    position = verify(ledger, view).projected_through
    stray = uuid4()
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE reservations SET status = 'held', ended_at = NULL WHERE id = %s", (holds[1],))
        conn.execute("DELETE FROM reservations WHERE id = %s", (holds[2],))
        conn.execute(
            "INSERT INTO reservations (id, retailer_id, coupon_id, code, status, discount_amount, expires_at,"
            " created_at, version) SELECT %s, retailer_id, coupon_id, code, status, discount_amount, expires_at,"
            " created_at, version FROM reservations WHERE id = %s",
            (stray, holds[0]),
        )
    found = violations(ledger, view)
    assert len(found) == 3, found
    tampered = next(v for v in found if str(holds[1]) in v)
    assert tampered.startswith(f"read model hold {holds[1]}: status held != released, ended_at None != ")
    assert f"read model lacks hold {holds[2]} (projected through {position})" in found
    assert f"read model has hold {stray} that the event log does not have through notification {position}" in found

    result = run_cli(database_url, "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "3 violation(s)" in result.stdout
    assert len([line for line in result.stdout.splitlines() if line.startswith("VIOLATION: ")]) == 3
