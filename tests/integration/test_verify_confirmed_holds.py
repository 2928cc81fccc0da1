"""`coupon-ledger verify` judges a confirmed hold as the ledger does: the hold becomes a use, and
at that moment (the Redeemed event's timestamp) uses plus the holds still live, itself included,
must be within max_uses. A confirm after a PATCH lowered max_uses below that is named."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from uuid import UUID

import pytest

from ledger.application import CouponLedger
from ledger.domain import Coupon, Redemption, Reservation, confirmed_redemption_id_for
from projections.coupons import CouponsView, construct_view
from projections.verify import verify
from tests.support.commands import create_coupon, reserve, update_coupon

D = Decimal


@pytest.fixture
def view(env: dict[str, str]) -> Iterator[CouponsView]:
    view = construct_view(env)
    yield view
    view.datastore.close()


def confirm_past_the_rules(ledger: CouponLedger, retailer_id: UUID, reservation_id: UUID) -> UUID:
    """Confirm a hold as the writer records it (coupon, Reservation and Redemption saved together),
    without the ledger's own checks, as a writer that skipped them would."""
    reservation: Reservation = ledger.repository.get(reservation_id)
    coupon: Coupon = ledger.repository.get(reservation.coupon_id)
    redemption_id = confirmed_redemption_id_for(reservation_id)
    coupon.confirm_hold(reservation, redemption_id, None)
    reservation.confirm(redemption_id, None)
    redemption = Redemption(
        id=redemption_id,
        retailer_id=retailer_id,
        coupon_id=coupon.id,
        code=coupon.code,
        idempotency_key=None,
        request_fingerprint=reservation.request_fingerprint,
        original_subtotal=reservation.original_subtotal,
        discount_amount=reservation.discount_amount,
        final_total=reservation.final_total,
        free_shipping=reservation.free_shipping,
        order_id=None,
        customer_id=None,
        campaign_id=None,
    )
    ledger.save(coupon, reservation, redemption)
    return redemption_id


def test_confirming_every_hold_within_max_uses_is_clean(
    ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    create_coupon(ledger, retailer_id, "PAIR", "fixed", D("5.00"), max_uses=2)
    holds = [reserve(ledger, retailer_id, "PAIR", D("50.00")).reservation_id for _ in range(2)]
    for reservation_id in holds:
        confirm_past_the_rules(ledger, retailer_id, reservation_id)
    assert verify(ledger, view).violations == []


def test_a_confirm_that_takes_uses_and_other_live_holds_past_a_lowered_max_uses_is_named(
    ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    coupon = create_coupon(ledger, retailer_id, "SHRUNK", "fixed", D("5.00"), max_uses=2)
    first, second = (reserve(ledger, retailer_id, "SHRUNK", D("50.00")).reservation_id for _ in range(2))
    update_coupon(ledger, retailer_id, "SHRUNK", {"max_uses": 1})  # lowering it alone is no violation
    assert verify(ledger, view).violations == []

    redemption_id = confirm_past_the_rules(ledger, retailer_id, first)
    violations = verify(ledger, view).violations
    assert len(violations) == 1, violations
    assert violations[0].startswith(f"coupon SHRUNK ({coupon.id}): redemption {redemption_id}")
    assert violations[0].endswith("made 1 live uses and 1 live holds, max_uses was 1")
    assert str(second) not in violations[0]
