"""The refusals of a coupon for an order: one family, known in the order the rules are checked."""

from __future__ import annotations

from ledger import errors
from ledger.errors import REFUSALS, CouponRefused, refusal_codes


def test_every_refusal_of_a_coupon_for_an_order_is_a_coupon_refused_listed_once() -> None:
    family = {
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, CouponRefused) and cls is not CouponRefused
    }
    assert family == set(REFUSALS)
    assert len(REFUSALS) == len(family)


def test_the_refusal_codes_come_in_the_contracts_validation_order() -> None:
    assert refusal_codes() == [
        "COUPON_NOT_FOUND",
        "COUPON_INACTIVE",
        "COUPON_NOT_STARTED",
        "COUPON_EXPIRED",
        "USAGE_LIMIT_REACHED",
        "CUSTOMER_ID_REQUIRED",
        "CUSTOMER_LIMIT_REACHED",
        "CAMPAIGN_BUDGET_EXHAUSTED",
        "MIN_ORDER_NOT_MET",
        "COUPON_NOT_APPLICABLE",
    ]


def test_a_rule_that_is_not_about_the_coupon_and_the_order_is_no_coupon_refusal() -> None:
    for other in (errors.CouponCodeTaken, errors.IdempotencyKeyReused, errors.SubtotalMismatch, errors.InvalidCoupon):
        assert not issubclass(other, CouponRefused)
