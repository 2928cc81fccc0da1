"""`coupon-ledger verify` checks the invariants of limits and reversals: live uses against max_uses as it stood,
reversals matched once, per-customer usage and limits, campaign budgets and counters, and the read
model's uses_count counting reversals back.

Each violation is built by saving crafted events directly: the aggregates' own event methods called
past the rules that would refuse them (as a buggy writer would), saved with the library's save().
A history that breaks nothing comes first and stays clean, so each test shows verify names exactly
the violation it built.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from uuid import UUID, uuid4

import psycopg
import pytest

from ledger.application import CouponLedger
from ledger.domain import Campaign, Coupon, CustomerUsage, Redemption, customer_usage_id_for
from projections.coupons import CouponsView, construct_view
from projections.verify import verify
from tests.support.commands import apply, create_campaign, create_coupon, reverse, update_coupon
from tests.support.ledger import campaign_codes
from tests.support.postgres import project_to_head, run_cli
from tests.support.stored_events import crafted_redemption

D = Decimal
FIVE = D("5.00")
TEMPLATE = {"discount_type": "fixed", "discount_value": FIVE}


@pytest.fixture
def view(env: dict[str, str]) -> Iterator[CouponsView]:
    view = construct_view(env)
    yield view
    view.datastore.close()


def coupon_of(ledger: CouponLedger, retailer_id: UUID, code: str) -> Coupon:
    return ledger.get_coupon(retailer_id, code, archived=True)


def assert_clean(ledger: CouponLedger, view: CouponsView) -> None:
    assert verify(ledger, view).violations == []


def only_violation(ledger: CouponLedger, view: CouponsView) -> str:
    violations = verify(ledger, view).violations
    assert len(violations) == 1, violations
    return violations[0]


# --- live uses against max_uses as it stood ------------------------------------------------------------


def test_a_redemption_past_max_uses_is_named_but_reversals_and_a_lowered_max_uses_are_not(
    ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    # Five redemptions of a max_uses=3 coupon, two of them given back first: never more than 3 live.
    create_coupon(ledger, retailer_id, "TURNOVER", "fixed", D("5.00"), max_uses=3)
    first = [apply(ledger, retailer_id, "TURNOVER", D("50.00")) for _ in range(3)]
    for receipt in first[:2]:
        reverse(ledger, retailer_id, receipt.redemption_id)
    apply(ledger, retailer_id, "TURNOVER", D("50.00"))
    apply(ledger, retailer_id, "TURNOVER", D("50.00"))
    # Three uses, then max_uses lowered to 1 by PATCH: allowed, it only stops further uses.
    create_coupon(ledger, retailer_id, "LOWERED", "fixed", D("5.00"), max_uses=5)
    for _ in range(3):
        apply(ledger, retailer_id, "LOWERED", D("50.00"))
    update_coupon(ledger, retailer_id, "LOWERED", {"max_uses": 1})
    report = verify(ledger, view)
    assert report.violations == []
    assert (report.coupons, report.redemptions, report.reversals) == (2, 8, 2)

    create_coupon(ledger, retailer_id, "OVERUSED", "fixed", D("5.00"), max_uses=2)
    apply(ledger, retailer_id, "OVERUSED", D("50.00"))
    update_coupon(ledger, retailer_id, "OVERUSED", {"max_uses": 1})
    past = crafted_redemption(ledger, retailer_id, "OVERUSED")  # a second live use while max_uses is 1
    coupon = coupon_of(ledger, retailer_id, "OVERUSED")
    violation = only_violation(ledger, view)
    assert "OVERUSED" in violation and str(coupon.id) in violation and str(past) in violation
    assert "2 live uses" in violation and "max_uses was 1" in violation


def test_a_use_past_max_uses_after_a_patch_raised_it_is_not_a_violation(
    ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    create_coupon(ledger, retailer_id, "RAISED", "fixed", D("5.00"), max_uses=1)
    apply(ledger, retailer_id, "RAISED", D("50.00"))
    update_coupon(ledger, retailer_id, "RAISED", {"max_uses": 2})
    apply(ledger, retailer_id, "RAISED", D("50.00"))
    update_coupon(ledger, retailer_id, "RAISED", {"max_uses": None})
    apply(ledger, retailer_id, "RAISED", D("50.00"))
    assert_clean(ledger, view)


# --- reversals ---------------------------------------------------------------------------------------------


def test_a_redemption_reversed_twice_is_named(ledger: CouponLedger, retailer_id: UUID, view: CouponsView) -> None:
    create_coupon(ledger, retailer_id, "TWICE", "fixed", D("5.00"))
    receipt = apply(ledger, retailer_id, "TWICE", D("50.00"))
    kept = apply(ledger, retailer_id, "TWICE", D("50.00"))
    reverse(ledger, retailer_id, receipt.redemption_id)
    reverse(ledger, retailer_id, receipt.redemption_id)  # the second changes nothing
    assert_clean(ledger, view)

    coupon = coupon_of(ledger, retailer_id, "TWICE")
    redemption: Redemption = ledger.repository.get(receipt.redemption_id)
    coupon.reverse_redemption(receipt.redemption_id, D("5.00"), "again")
    redemption.reverse("again", ledger.clock())
    ledger.save(coupon, redemption)
    violation = only_violation(ledger, view)
    assert str(receipt.redemption_id) in violation and "reversed more than once" in violation
    assert str(kept.redemption_id) not in violation


def test_a_reversal_on_the_coupon_alone_or_on_the_redemption_alone_is_named(
    ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    create_coupon(ledger, retailer_id, "HALF", "fixed", D("5.00"))
    on_coupon = apply(ledger, retailer_id, "HALF", D("50.00"))
    on_itself = apply(ledger, retailer_id, "HALF", D("50.00"))
    coupon = coupon_of(ledger, retailer_id, "HALF")
    coupon.reverse_redemption(on_coupon.redemption_id, D("5.00"), None)
    ledger.save(coupon)
    redemption: Redemption = ledger.repository.get(on_itself.redemption_id)
    redemption.reverse(None, ledger.clock())
    ledger.save(redemption)

    violations = verify(ledger, view).violations
    assert len(violations) == 2, violations
    coupon_only = next(v for v in violations if str(on_coupon.redemption_id) in v)
    itself_only = next(v for v in violations if str(on_itself.redemption_id) in v)
    assert "1 RedemptionReversed on its coupon but 0 Redemption.Reversed" in coupon_only
    assert "0 RedemptionReversed on its coupon but 1 Redemption.Reversed" in itself_only


def test_a_coupon_giving_back_another_coupons_redemption_or_another_amount_is_named(
    ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    create_coupon(ledger, retailer_id, "OWNER", "fixed", D("5.00"))
    create_coupon(ledger, retailer_id, "STRANGER", "fixed", D("5.00"))
    owned = apply(ledger, retailer_id, "OWNER", D("50.00"))
    other = apply(ledger, retailer_id, "OWNER", D("50.00"))
    apply(ledger, retailer_id, "STRANGER", D("50.00"))

    stranger = coupon_of(ledger, retailer_id, "STRANGER")
    stranger.reverse_redemption(owned.redemption_id, D("5.00"), None)
    first: Redemption = ledger.repository.get(owned.redemption_id)
    first.reverse(None, ledger.clock())
    owner = coupon_of(ledger, retailer_id, "OWNER")
    owner.reverse_redemption(other.redemption_id, D("4.99"), None)
    second: Redemption = ledger.repository.get(other.redemption_id)
    second.reverse(None, ledger.clock())
    ledger.save(stranger, first, owner, second)

    violations = verify(ledger, view).violations
    assert len(violations) == 2, violations
    assert f"coupon STRANGER ({stranger.id}) gives back redemption {owned.redemption_id}, which it never redeemed" in (
        violations
    )
    assert any(
        f"coupon OWNER ({owner.id}) gives back redemption {other.redemption_id} for 4.99" in v
        and "redeemed for 5.00" in v
        for v in violations
    )


# --- per customer ------------------------------------------------------------------------------------------


def test_a_redemption_past_the_per_customer_limit_in_force_is_named(
    ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    create_coupon(ledger, retailer_id, "ONCEEACH", "fixed", D("5.00"), max_uses_per_customer=2)
    apply(ledger, retailer_id, "ONCEEACH", D("50.00"), customer_id="alice")
    given_back = apply(ledger, retailer_id, "ONCEEACH", D("50.00"), customer_id="alice")
    reverse(ledger, retailer_id, given_back.redemption_id)
    apply(ledger, retailer_id, "ONCEEACH", D("50.00"), customer_id="alice")  # 2 live
    update_coupon(ledger, retailer_id, "ONCEEACH", {"max_uses_per_customer": 1})  # lowered: no violation
    apply(ledger, retailer_id, "ONCEEACH", D("50.00"), customer_id="bob")
    assert_clean(ledger, view)

    past = crafted_redemption(ledger, retailer_id, "ONCEEACH", customer_id="bob")
    coupon = coupon_of(ledger, retailer_id, "ONCEEACH")
    violation = only_violation(ledger, view)
    assert violation == (
        f"customer bob of coupon ONCEEACH ({coupon.id}): redemption {past} made 2 live uses,"
        " max_uses_per_customer was 1"
    )


def test_a_customer_usage_that_disagrees_with_the_customers_live_redemptions_is_named(
    ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    create_coupon(ledger, retailer_id, "COUNTED", "fixed", D("5.00"))
    apply(ledger, retailer_id, "COUNTED", D("50.00"), customer_id="alice")
    apply(ledger, retailer_id, "COUNTED", D("50.00"), customer_id="carol")
    assert_clean(ledger, view)

    crafted_redemption(ledger, retailer_id, "COUNTED", customer_id="alice", record_on_usage=False)
    coupon = coupon_of(ledger, retailer_id, "COUNTED")
    usage: CustomerUsage = ledger.repository.get(customer_usage_id_for(coupon.id, "carol"))
    usage.give_back(uuid4())  # a use given back that no reversal made
    ledger.save(usage)
    violations = verify(ledger, view).violations
    assert sorted(violations) == [
        f"customer alice of coupon COUNTED ({coupon.id}): CustomerUsage holds 1 uses, the customer has 2 live"
        " redemptions",
        f"customer carol of coupon COUNTED ({coupon.id}): CustomerUsage holds 0 uses, the customer has 1 live"
        " redemptions",
    ]


# --- per campaign ------------------------------------------------------------------------------------------


def test_a_campaign_redeemed_past_max_redemptions_is_named(
    ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    campaign = create_campaign(ledger, retailer_id, "Pair", "PAIR", 3, TEMPLATE, max_redemptions=2)
    codes = campaign_codes(ledger, campaign.id)
    receipt = apply(ledger, retailer_id, codes[0], D("50.00"))
    reverse(ledger, retailer_id, receipt.redemption_id)
    apply(ledger, retailer_id, codes[1], D("50.00"))
    apply(ledger, retailer_id, codes[2], D("50.00"))
    assert_clean(ledger, view)

    past = crafted_redemption(ledger, retailer_id, codes[0])
    violation = only_violation(ledger, view)
    assert violation == (f"campaign Pair ({campaign.id}): redemption {past} made 3 live redemptions, max_redemptions 2")


def test_a_campaign_past_max_discount_total_is_named(
    ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    campaign = create_campaign(ledger, retailer_id, "Budget", "BUDGET", 2, TEMPLATE, max_discount_total=D("10.00"))
    codes = campaign_codes(ledger, campaign.id)
    apply(ledger, retailer_id, codes[0], D("50.00"))
    apply(ledger, retailer_id, codes[1], D("50.00"))  # exactly 10.00: allowed
    assert_clean(ledger, view)

    past = crafted_redemption(ledger, retailer_id, codes[1], discount=D("0.01"))
    violation = only_violation(ledger, view)
    assert violation == (
        f"campaign Budget ({campaign.id}): redemption {past} took live discounts to 10.01, max_discount_total 10.00"
    )


def test_a_campaign_whose_counters_disagree_with_its_live_redemptions_is_named(
    ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    campaign = create_campaign(ledger, retailer_id, "Drift", "DRIFT", 2, TEMPLATE)
    codes = campaign_codes(ledger, campaign.id)
    apply(ledger, retailer_id, codes[0], D("50.00"))
    crafted_redemption(ledger, retailer_id, codes[1], record_on_campaign=False)  # a redemption the campaign missed
    violation = only_violation(ledger, view)
    assert (
        violation
        == f"campaign Drift ({campaign.id}) counts 1 redemptions for 5.00, its live redemptions are 2 for 10.00"
    )

    stored: Campaign = ledger.repository.get(campaign.id)
    stored.give_back(uuid4(), D("5.00"))  # and a return no reversal made
    ledger.save(stored)
    assert only_violation(ledger, view) == (
        f"campaign Drift ({campaign.id}) counts 0 redemptions for 0.00, its live redemptions are 2 for 10.00"
    )


# --- the read model ----------------------------------------------------------------------------------------


def test_uses_count_in_the_read_model_is_redeemed_minus_reversed(
    database_url: str, env: dict[str, str], ledger: CouponLedger, retailer_id: UUID, view: CouponsView
) -> None:
    coupon = create_coupon(ledger, retailer_id, "BACK", "fixed", D("5.00"), max_uses=2)
    receipts = [apply(ledger, retailer_id, "BACK", D("50.00")) for _ in range(2)]
    reverse(ledger, retailer_id, receipts[0].redemption_id)
    apply(ledger, retailer_id, "BACK", D("50.00"))
    reverse(ledger, retailer_id, receipts[1].redemption_id)
    project_to_head(env, database_url)
    assert_clean(ledger, view)
    assert verify(ledger, view).projected_through > 0

    with psycopg.connect(database_url) as conn:  # what a read model ignoring reversals would hold
        conn.execute("UPDATE coupons SET uses_count = 3 WHERE id = %s", (coupon.id,))
    violation = only_violation(ledger, view)
    assert violation == (
        f"coupon BACK ({coupon.id}): read model uses_count 3 != 1 Redeemed - RedemptionReversed events"
        f" through notification {verify(ledger, view).projected_through}"
    )


def test_the_command_names_each_violation_and_exits_1(
    database_url: str, ledger: CouponLedger, retailer_id: UUID
) -> None:
    create_coupon(ledger, retailer_id, "CLI", "fixed", D("5.00"), max_uses=1, max_uses_per_customer=1)
    apply(ledger, retailer_id, "CLI", D("50.00"), customer_id="alice")
    clean = run_cli(database_url, "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr

    crafted = crafted_redemption(ledger, retailer_id, "CLI", customer_id="alice")
    result = run_cli(database_url, "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("VIOLATION: ")]
    assert len(lines) == 2, result.stdout
    assert all(str(crafted) in line for line in lines)
    assert any("max_uses was 1" in line for line in lines)
    assert any("customer alice" in line and "max_uses_per_customer was 1" in line for line in lines)
    assert "2 violation(s)" in result.stdout
