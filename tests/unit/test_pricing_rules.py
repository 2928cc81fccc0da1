"""Pricing rules on the in-memory store: the per-customer limit, the discount cap, free shipping, scopes
over the order's items, the validation order of DESIGN §3 and idempotent replays of the new inputs."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from ledger.application import CouponLedger
from ledger.domain import FIXED, FREE_SHIPPING, PERCENTAGE, Item
from tests.support.commands import (
    activate,
    apply,
    archive,
    create_campaign,
    create_coupon,
    deactivate,
    reverse,
    update_coupon,
)
from tests.support.ledger import (
    DAY,
    HOUR,
    RETAILER,
    START,
    D,
    ManualClock,
    campaign_codes,
    campaign_of,
    code_of,
    coupon,
    customer_uses,
    error_from,
    event_types,
    item,
    price,
)

BOTH = pytest.mark.parametrize("operation", ["validate", "apply"])


# --- max_uses_per_customer ---------------------------------------------------------------------------


class TestPerCustomerLimit:
    @BOTH
    def test_a_coupon_with_a_per_customer_limit_requires_a_customer_id(
        self, ledger: CouponLedger, operation: str
    ) -> None:
        create_coupon(ledger, RETAILER, "ONCEEACH", FIXED, D("5.00"), max_uses_per_customer=1)
        error = error_from(lambda: price(ledger, operation, "ONCEEACH", "20.00"))
        assert error.code == "CUSTOMER_ID_REQUIRED"
        assert error.details == {"max_uses_per_customer": 1}
        assert coupon(ledger, "ONCEEACH").uses_count == 0

    @pytest.mark.parametrize("blank", ["", " ", "\t"])
    @BOTH
    def test_a_blank_customer_id_is_refused_rather_than_counted_as_nobody(
        self, ledger: CouponLedger, operation: str, blank: str
    ) -> None:
        create_coupon(ledger, RETAILER, "ONCEEACH", FIXED, D("5.00"), max_uses_per_customer=1)
        error = error_from(lambda: price(ledger, operation, "ONCEEACH", "20.00", customer_id=blank))
        assert error.code == "VALIDATION_FAILED"
        assert [e["field"] for e in error.details["errors"]] == ["customer_id"]
        assert coupon(ledger, "ONCEEACH").uses_count == 0

    def test_the_limit_counts_each_customer_separately(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "TWICEEACH", FIXED, D("5.00"), max_uses_per_customer=2)
        for _ in range(2):
            apply(ledger, RETAILER, "TWICEEACH", D("20.00"), customer_id="alice")
        error = error_from(lambda: apply(ledger, RETAILER, "TWICEEACH", D("20.00"), customer_id="alice"))
        assert error.code == "CUSTOMER_LIMIT_REACHED"
        assert error.details == {"customer_id": "alice", "max_uses_per_customer": 2, "uses": 2}
        assert code_of(lambda: ledger.validate(RETAILER, "TWICEEACH", D("20.00"), customer_id="alice")) == (
            "CUSTOMER_LIMIT_REACHED"
        )
        apply(ledger, RETAILER, "TWICEEACH", D("20.00"), customer_id="bob")  # another customer is unaffected
        assert (customer_uses(ledger, "TWICEEACH", "alice"), customer_uses(ledger, "TWICEEACH", "bob")) == (2, 1)
        assert coupon(ledger, "TWICEEACH").uses_count == 3

    def test_validate_consumes_none_of_the_customers_uses(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "ONCEEACH", FIXED, D("5.00"), max_uses_per_customer=1)
        for _ in range(3):
            ledger.validate(RETAILER, "ONCEEACH", D("20.00"), customer_id="alice")
        assert customer_uses(ledger, "ONCEEACH", "alice") == 0
        apply(ledger, RETAILER, "ONCEEACH", D("20.00"), customer_id="alice")

    def test_a_reversal_gives_the_customer_their_use_back(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "ONCEEACH", FIXED, D("5.00"), max_uses_per_customer=1)
        first = apply(ledger, RETAILER, "ONCEEACH", D("20.00"), customer_id="alice")
        assert code_of(lambda: apply(ledger, RETAILER, "ONCEEACH", D("20.00"), customer_id="alice")) == (
            "CUSTOMER_LIMIT_REACHED"
        )
        reverse(ledger, RETAILER, first.redemption_id, "order cancelled")
        assert customer_uses(ledger, "ONCEEACH", "alice") == 0
        apply(ledger, RETAILER, "ONCEEACH", D("20.00"), customer_id="alice")
        assert customer_uses(ledger, "ONCEEACH", "alice") == 1

    def test_uses_made_before_the_limit_was_set_count_against_it(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "LATELIMIT", FIXED, D("5.00"))
        apply(ledger, RETAILER, "LATELIMIT", D("20.00"), customer_id="alice")
        apply(ledger, RETAILER, "LATELIMIT", D("20.00"))  # anonymous: counted on the coupon only
        update_coupon(ledger, RETAILER, "LATELIMIT", {"max_uses_per_customer": 1})
        error = error_from(lambda: apply(ledger, RETAILER, "LATELIMIT", D("20.00"), customer_id="alice"))
        assert error.details == {"customer_id": "alice", "max_uses_per_customer": 1, "uses": 1}
        apply(ledger, RETAILER, "LATELIMIT", D("20.00"), customer_id="bob")

    def test_the_per_customer_limit_is_per_coupon(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "FIRST", FIXED, D("5.00"), max_uses_per_customer=1)
        create_coupon(ledger, RETAILER, "SECOND", FIXED, D("5.00"), max_uses_per_customer=1)
        apply(ledger, RETAILER, "FIRST", D("20.00"), customer_id="alice")
        apply(ledger, RETAILER, "SECOND", D("20.00"), customer_id="alice")
        assert customer_uses(ledger, "FIRST", "alice") == customer_uses(ledger, "SECOND", "alice") == 1

    def test_the_customers_usage_is_saved_with_the_redemption(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "ONCEEACH", FIXED, D("5.00"), max_uses_per_customer=1)
        receipt = apply(ledger, RETAILER, "ONCEEACH", D("20.00"), customer_id="alice")
        redemption = ledger.get_redemption(RETAILER, receipt.redemption_id)
        assert (redemption.customer_id, redemption.campaign_id) == ("alice", None)
        assert event_types(ledger, "ONCEEACH") == ["Coupon.Created", "Coupon.Redeemed"]


# --- max_discount_amount and free_shipping -----------------------------------------------------------


class TestCapAndFreeShipping:
    @BOTH
    @pytest.mark.parametrize(
        ("subtotal", "discount"), [("100.00", "20.00"), ("40.00", "20.00"), ("39.99", "20.00"), ("30.00", "15.00")]
    )
    def test_max_discount_amount_caps_a_percentage(
        self, ledger: CouponLedger, operation: str, subtotal: str, discount: str
    ) -> None:
        create_coupon(ledger, RETAILER, "HALF", PERCENTAGE, D("50"), max_discount_amount=D("20.00"))
        quote = price(ledger, operation, "HALF", subtotal)
        assert (quote.discount_amount, quote.final_total) == (D(discount), D(subtotal) - D(discount))

    @BOTH
    @pytest.mark.parametrize(
        ("shipping", "subtotal", "discount"),
        [("7.50", "40.00", "7.50"), (None, "40.00", "0.00"), ("0.00", "40.00", "0.00"), ("60.00", "40.00", "40.00")],
        ids=["shipping", "no-shipping", "zero-shipping", "shipping-above-subtotal"],
    )
    def test_free_shipping_discounts_the_shipping_capped_at_the_subtotal(
        self, ledger: CouponLedger, operation: str, shipping: str | None, subtotal: str, discount: str
    ) -> None:
        create_coupon(ledger, RETAILER, "SHIPFREE", FREE_SHIPPING, D("0"))
        shipping_amount = D(shipping) if shipping is not None else None
        quote = price(ledger, operation, "SHIPFREE", subtotal, shipping_amount=shipping_amount)
        assert quote.free_shipping is True
        assert (quote.original_subtotal, quote.discount_amount, quote.final_total) == (
            D(subtotal),
            D(discount),
            D(subtotal) - D(discount),
        )

    def test_a_free_shipping_redemption_records_the_flag(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "SHIPFREE", FREE_SHIPPING, D("0"), min_order_value=D("30.00"))
        receipt = apply(ledger, RETAILER, "SHIPFREE", D("30.00"), shipping_amount=D("4.99"))
        redemption = ledger.get_redemption(RETAILER, receipt.redemption_id)
        assert (redemption.free_shipping, redemption.discount_amount) == (True, D("4.99"))
        error = error_from(lambda: apply(ledger, RETAILER, "SHIPFREE", D("29.99"), shipping_amount=D("4.99")))
        assert (error.code, error.details) == ("MIN_ORDER_NOT_MET", {"required_minimum": "30.00", "subtotal": "29.99"})
        assert price(ledger, "validate", "SHIPFREE", "30.00").free_shipping is True

    def test_other_types_say_free_shipping_false_and_ignore_the_shipping(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "TENOFF", PERCENTAGE, D("10"))
        quote = price(ledger, "apply", "TENOFF", "50.00", shipping_amount=D("9.00"))
        assert (quote.free_shipping, quote.discount_amount) == (False, D("5.00"))

    def test_a_free_shipping_coupon_takes_no_discount_value(self, ledger: CouponLedger) -> None:
        assert create_coupon(ledger, RETAILER, "NOVALUE", FREE_SHIPPING, None).discount_value == D("0")  # type: ignore[arg-type]
        error = error_from(lambda: create_coupon(ledger, RETAILER, "WITHVALUE", FREE_SHIPPING, D("5")))
        assert [e["field"] for e in error.details["errors"]] == ["discount_value"]


# --- scopes ------------------------------------------------------------------------------------------

CART = [
    item("shirt", "40.00", 2, variant_id="shirt-red", category_id="apparel"),
    item("mug", "12.50", 1, category_id="kitchen"),
    item("card", "5.00", 3, category_id="gift"),
]  # 80.00 + 12.50 + 15.00 = 107.50


class TestScopes:
    @BOTH
    @pytest.mark.parametrize(
        ("scope", "eligible"),
        [
            ({"product_ids": ["mug"]}, "12.50"),
            ({"variant_ids": ["shirt-red"]}, "80.00"),
            ({"category_ids": ["apparel", "gift"]}, "95.00"),
            ({"product_ids": ["mug"], "category_ids": ["gift"]}, "27.50"),
            ({"excluded_product_ids": ["shirt"]}, "27.50"),
            ({"excluded_category_ids": ["gift"]}, "92.50"),
            ({"category_ids": ["apparel", "gift"], "excluded_product_ids": ["card"]}, "80.00"),
            ({"product_ids": ["card"], "excluded_category_ids": ["gift"], "variant_ids": ["shirt-red"]}, "80.00"),
        ],
        ids=["product", "variant", "categories", "product-or-category", "all-but-product", "all-but-category",
             "exclusion-beats-inclusion", "category-exclusion-beats-product-inclusion"],
    )  # fmt: skip
    def test_a_percentage_discounts_the_eligible_lines_only(
        self, ledger: CouponLedger, operation: str, scope: dict[str, list[str]], eligible: str
    ) -> None:
        create_coupon(ledger, RETAILER, "SCOPED", PERCENTAGE, D("10"), scope=scope)
        quote = price(ledger, operation, "SCOPED", items=CART)
        expected = (D(eligible) / 10).quantize(D("0.01"))
        assert (quote.original_subtotal, quote.discount_amount, quote.final_total) == (
            D("107.50"),
            expected,
            D("107.50") - expected,
        )

    def test_a_percentage_of_the_eligible_lines_rounds_half_up_and_is_capped(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "ODD", PERCENTAGE, D("12.5"), scope={"product_ids": ["mug"]})
        assert price(ledger, "validate", "ODD", items=CART).discount_amount == D("1.56")  # 1.5625
        create_coupon(
            ledger,
            RETAILER,
            "CAPPED",
            PERCENTAGE,
            D("50"),
            scope={"category_ids": ["apparel"]},
            max_discount_amount=D("25"),
        )
        assert price(ledger, "validate", "CAPPED", items=CART).discount_amount == D("25.00")

    @BOTH
    @pytest.mark.parametrize(("value", "discount"), [("10.00", "10.00"), ("12.50", "12.50"), ("30.00", "12.50")])
    def test_a_fixed_discount_is_capped_at_the_eligible_lines_sum(
        self, ledger: CouponLedger, operation: str, value: str, discount: str
    ) -> None:
        create_coupon(ledger, RETAILER, "MUGS", FIXED, D(value), scope={"product_ids": ["mug"]})
        quote = price(ledger, operation, "MUGS", items=CART)
        assert (quote.discount_amount, quote.final_total) == (D(discount), D("107.50") - D(discount))

    def test_the_minimum_order_applies_to_the_whole_subtotal(self, ledger: CouponLedger) -> None:
        create_coupon(
            ledger, RETAILER, "MUGS", FIXED, D("5.00"), min_order_value=D("100.00"), scope={"product_ids": ["mug"]}
        )
        assert price(ledger, "apply", "MUGS", items=CART).discount_amount == D("5.00")  # eligible 12.50 < 100
        error = error_from(lambda: price(ledger, "apply", "MUGS", items=CART[1:]))
        assert error.details == {"required_minimum": "100.00", "subtotal": "27.50"}

    @BOTH
    def test_nothing_eligible_is_not_applicable_no_eligible_items(self, ledger: CouponLedger, operation: str) -> None:
        create_coupon(ledger, RETAILER, "BOOKS", PERCENTAGE, D("10"), scope={"category_ids": ["books"]})
        error = error_from(lambda: price(ledger, operation, "BOOKS", items=CART))
        assert error.code == "COUPON_NOT_APPLICABLE"
        assert error.details == {"reason": "no_eligible_items"}
        assert coupon(ledger, "BOOKS").uses_count == 0

    @BOTH
    def test_a_scoped_coupon_without_items_is_not_applicable(self, ledger: CouponLedger, operation: str) -> None:
        create_coupon(ledger, RETAILER, "BOOKS", PERCENTAGE, D("10"), scope={"category_ids": ["books"]})
        error = error_from(lambda: price(ledger, operation, "BOOKS", "50.00"))
        assert (error.code, error.details) == ("COUPON_NOT_APPLICABLE", {"reason": "no_eligible_items"})
        assert "items" in error.message

    @BOTH
    def test_every_line_excluded_by_product_is_product_excluded_naming_them(
        self, ledger: CouponLedger, operation: str
    ) -> None:
        create_coupon(ledger, RETAILER, "NOSHIRT", PERCENTAGE, D("10"), scope={"excluded_product_ids": ["shirt"]})
        error = error_from(lambda: price(ledger, operation, "NOSHIRT", items=CART[:1]))
        assert error.code == "COUPON_NOT_APPLICABLE"
        assert error.details == {"reason": "product_excluded", "product_ids": ["shirt"]}

    @BOTH
    def test_every_line_excluded_by_category_is_category_excluded_naming_them(
        self, ledger: CouponLedger, operation: str
    ) -> None:
        create_coupon(
            ledger, RETAILER, "NOGIFTS", PERCENTAGE, D("10"), scope={"excluded_category_ids": ["gift", "kitchen"]}
        )
        error = error_from(lambda: price(ledger, operation, "NOGIFTS", items=CART[1:]))
        assert error.code == "COUPON_NOT_APPLICABLE"
        assert error.details == {
            "reason": "category_excluded",
            "product_ids": ["card", "mug"],
            "category_ids": ["gift", "kitchen"],
        }

    def test_an_exclusion_is_named_over_lines_that_are_merely_not_included(self, ledger: CouponLedger) -> None:
        create_coupon(
            ledger,
            RETAILER,
            "ONLYMUGS",
            PERCENTAGE,
            D("10"),
            scope={"product_ids": ["mug"], "excluded_product_ids": ["mug"]},
        )
        error = error_from(lambda: price(ledger, "validate", "ONLYMUGS", items=CART))
        assert error.details == {"reason": "product_excluded", "product_ids": ["mug"]}

    def test_a_line_matches_on_variant_or_category_only_when_it_has_one(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "REDS", FIXED, D("5.00"), scope={"variant_ids": ["shirt-red"]})
        plain_shirt = [item("shirt", "40.00")]
        assert error_from(lambda: price(ledger, "validate", "REDS", items=plain_shirt)).details == {
            "reason": "no_eligible_items"
        }

    @BOTH
    def test_with_items_the_subtotal_is_their_sum_and_a_different_subtotal_is_a_mismatch(
        self, ledger: CouponLedger, operation: str
    ) -> None:
        create_coupon(ledger, RETAILER, "TENOFF", PERCENTAGE, D("10"))
        assert price(ledger, operation, "TENOFF", "107.50", items=CART).original_subtotal == D("107.50")
        error = error_from(lambda: price(ledger, operation, "TENOFF", "100.00", items=CART))
        assert error.code == "SUBTOTAL_MISMATCH"
        assert error.details == {"subtotal": "100.00", "items_subtotal": "107.50"}
        assert "100.00" in error.message and "107.50" in error.message

    def test_an_empty_item_list_or_no_subtotal_at_all_is_a_validation_error(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "TENOFF", PERCENTAGE, D("10"))
        empty = error_from(lambda: ledger.validate(RETAILER, "TENOFF", None, items=[]))
        assert [e["field"] for e in empty.details["errors"]] == ["items"]
        nothing = error_from(lambda: apply(ledger, RETAILER, "TENOFF", None))
        assert [e["field"] for e in nothing.details["errors"]] == ["subtotal"]

    def test_the_redemption_keeps_the_whole_subtotal_and_the_scoped_discount(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "MUGS", PERCENTAGE, D("20"), scope={"product_ids": ["mug"]})
        receipt = apply(ledger, RETAILER, "MUGS", None, items=CART, order_id="o-1")
        redemption = ledger.get_redemption(RETAILER, receipt.redemption_id)
        assert (redemption.original_subtotal, redemption.discount_amount, redemption.final_total) == (
            D("107.50"),
            D("2.50"),
            D("105.00"),
        )


# --- the validation order of DESIGN §3 ---------------------------------------------------------------


def campaign_coupon(ledger: CouponLedger, template: dict[str, Any], **budget: Any) -> tuple[UUID, str]:
    campaign = create_campaign(ledger, RETAILER, "Order", "ord", 1, template, **budget)
    return campaign.id, campaign_codes(ledger, campaign.id)[0]


class TestValidationOrder:
    """Each pair of adjacent rules, both broken: the earlier one is the answer, for validate and apply."""

    @BOTH
    def test_not_found_before_inactive(self, ledger: CouponLedger, operation: str) -> None:
        create_coupon(ledger, RETAILER, "OFFGONE", FIXED, D("5.00"), is_active=False)
        archive(ledger, RETAILER, "OFFGONE")
        assert code_of(lambda: price(ledger, operation, "OFFGONE", "20.00")) == "COUPON_NOT_FOUND"

    @BOTH
    def test_inactive_before_not_started(self, ledger: CouponLedger, operation: str) -> None:
        create_coupon(ledger, RETAILER, "OFFLATER", FIXED, D("5.00"), is_active=False, starts_at=START + HOUR)
        assert code_of(lambda: price(ledger, operation, "OFFLATER", "20.00")) == "COUPON_INACTIVE"

    def test_not_started_and_expired_cannot_both_hold(self, ledger: CouponLedger) -> None:
        """Both broken needs expires_at <= now < starts_at, a window the domain refuses to store."""
        error = error_from(
            lambda: create_coupon(
                ledger, RETAILER, "NEVER", FIXED, D("5.00"), starts_at=START + HOUR, expires_at=START - HOUR
            )
        )
        assert error.code == "VALIDATION_FAILED"
        create_coupon(ledger, RETAILER, "NEVER", FIXED, D("5.00"), starts_at=START + HOUR, expires_at=START + DAY)
        assert code_of(lambda: update_coupon(ledger, RETAILER, "NEVER", {"expires_at": START - HOUR})) == (
            "VALIDATION_FAILED"
        )

    @BOTH
    def test_not_started_before_the_usage_limit(self, ledger: CouponLedger, clock: ManualClock, operation: str) -> None:
        create_coupon(ledger, RETAILER, "USEDLATER", FIXED, D("5.00"), max_uses=1)
        apply(ledger, RETAILER, "USEDLATER", D("20.00"))
        update_coupon(ledger, RETAILER, "USEDLATER", {"starts_at": START + HOUR})
        assert code_of(lambda: price(ledger, operation, "USEDLATER", "20.00")) == "COUPON_NOT_STARTED"

    @BOTH
    def test_expired_before_the_usage_limit(self, ledger: CouponLedger, clock: ManualClock, operation: str) -> None:
        create_coupon(ledger, RETAILER, "USEDOVER", FIXED, D("5.00"), max_uses=1, expires_at=START + HOUR)
        apply(ledger, RETAILER, "USEDOVER", D("20.00"))
        clock.set(START + HOUR)
        assert code_of(lambda: price(ledger, operation, "USEDOVER", "20.00")) == "COUPON_EXPIRED"

    @BOTH
    def test_usage_limit_before_the_per_customer_limit(self, ledger: CouponLedger, operation: str) -> None:
        create_coupon(ledger, RETAILER, "BOTHLIMITS", FIXED, D("5.00"), max_uses=1, max_uses_per_customer=1)
        apply(ledger, RETAILER, "BOTHLIMITS", D("20.00"), customer_id="alice")
        result = code_of(lambda: price(ledger, operation, "BOTHLIMITS", "20.00", customer_id="alice"))
        assert result == "USAGE_LIMIT_REACHED"
        assert code_of(lambda: price(ledger, operation, "BOTHLIMITS", "20.00")) == "USAGE_LIMIT_REACHED"

    @BOTH
    def test_per_customer_limit_before_the_campaign_budget(self, ledger: CouponLedger, operation: str) -> None:
        template = {"discount_type": FIXED, "discount_value": D("5.00"), "max_uses_per_customer": 1}
        _, code = campaign_coupon(ledger, template, max_redemptions=1)
        apply(ledger, RETAILER, code, D("20.00"), customer_id="alice")
        assert code_of(lambda: price(ledger, operation, code, "20.00", customer_id="alice")) == (
            "CUSTOMER_LIMIT_REACHED"
        )
        assert code_of(lambda: price(ledger, operation, code, "20.00")) == "CUSTOMER_ID_REQUIRED"
        assert code_of(lambda: price(ledger, operation, code, "20.00", customer_id="bob")) == (
            "CAMPAIGN_BUDGET_EXHAUSTED"
        )

    @BOTH
    @pytest.mark.parametrize("budget", [{"max_redemptions": 1}, {"max_discount_total": D("5.00")}])
    def test_campaign_budget_before_the_minimum_order(
        self, ledger: CouponLedger, operation: str, budget: dict[str, Any]
    ) -> None:
        template = {"discount_type": FIXED, "discount_value": D("5.00"), "min_order_value": D("50.00")}
        _, code = campaign_coupon(ledger, template, **budget)
        apply(ledger, RETAILER, code, D("60.00"))
        assert code_of(lambda: price(ledger, operation, code, "10.00")) == "CAMPAIGN_BUDGET_EXHAUSTED"

    def test_a_discount_too_big_for_the_remaining_budget_is_known_only_once_priced(self, ledger: CouponLedger) -> None:
        """With budget left but not enough for this discount, the minimum order and the scope are
        checked first (the discount depends on them)."""
        template = {
            "discount_type": FIXED,
            "discount_value": D("5.00"),
            "min_order_value": D("50.00"),
            "scope": {"product_ids": ["mug"]},
        }
        _, code = campaign_coupon(ledger, template, max_discount_total=D("7.00"))
        apply(ledger, RETAILER, code, None, items=[item("mug", "50.00")])  # 2.00 left
        assert code_of(lambda: price(ledger, "validate", code, "10.00")) == "MIN_ORDER_NOT_MET"
        assert code_of(lambda: price(ledger, "validate", code, items=[item("shirt", "60.00")])) == (
            "COUPON_NOT_APPLICABLE"
        )
        assert code_of(lambda: price(ledger, "validate", code, items=[item("mug", "60.00")])) == (
            "CAMPAIGN_BUDGET_EXHAUSTED"
        )
        assert price(ledger, "validate", code, items=[item("mug", "1.50"), item("x", "50")]).discount_amount == D(
            "1.50"
        )

    @BOTH
    def test_minimum_order_before_the_scope(self, ledger: CouponLedger, operation: str) -> None:
        create_coupon(
            ledger, RETAILER, "PICKY", FIXED, D("5.00"), min_order_value=D("50.00"), scope={"product_ids": ["mug"]}
        )
        assert code_of(lambda: price(ledger, operation, "PICKY", items=[item("shirt", "10.00")])) == (
            "MIN_ORDER_NOT_MET"
        )

    def test_every_rule_broken_at_once_reports_each_in_turn_as_the_earlier_ones_are_fixed(
        self, ledger: CouponLedger, clock: ManualClock
    ) -> None:
        template = {
            "discount_type": FIXED,
            "discount_value": D("5.00"),
            "min_order_value": D("50.00"),
            "max_uses": 1,
            "max_uses_per_customer": 1,
            "expires_at": START + HOUR,
            "scope": {"product_ids": ["mug"]},
        }
        _, code = campaign_coupon(ledger, template, max_redemptions=1)
        first = apply(ledger, RETAILER, code, None, items=[item("mug", "60.00")], customer_id="alice")
        update_coupon(ledger, RETAILER, code, {"starts_at": START + HOUR / 2})
        deactivate(ledger, RETAILER, code)
        clock.set(START + HOUR / 4)
        order: dict[str, Any] = {"items": [item("shirt", "10.00")], "customer_id": "alice"}
        fixes: list[tuple[str, Callable[[], object]]] = [
            ("COUPON_INACTIVE", lambda: activate(ledger, RETAILER, code)),
            ("COUPON_NOT_STARTED", lambda: clock.set(START + 2 * HOUR)),
            ("COUPON_EXPIRED", lambda: update_coupon(ledger, RETAILER, code, {"expires_at": None})),
            ("USAGE_LIMIT_REACHED", lambda: update_coupon(ledger, RETAILER, code, {"max_uses": None})),
            ("CUSTOMER_LIMIT_REACHED", lambda: order.update(customer_id="bob")),
            ("CAMPAIGN_BUDGET_EXHAUSTED", lambda: reverse(ledger, RETAILER, first.redemption_id)),
            ("MIN_ORDER_NOT_MET", lambda: order.update(items=[item("shirt", "60.00")])),
            ("COUPON_NOT_APPLICABLE", lambda: order.update(items=[item("mug", "60.00")])),
        ]
        for expected, fix in fixes:
            assert code_of(lambda: price(ledger, "validate", code, **order)) == expected
            fix()
        assert price(ledger, "apply", code, **order).discount_amount == D("5.00")


# --- idempotent replays with the new inputs ----------------------------------------------------------


class TestIdempotency:
    def test_a_replay_with_items_shipping_and_customer_returns_the_first_answer_and_counts_nothing(
        self, ledger: CouponLedger
    ) -> None:
        template = {"discount_type": FREE_SHIPPING, "max_uses_per_customer": 1}
        campaign = create_campaign(ledger, RETAILER, "Ship", "ship", 1, template, max_redemptions=5)
        code = campaign_codes(ledger, campaign.id)[0]
        body: dict[str, Any] = {
            "items": [item("mug", "12.50", 2, category_id="kitchen")],
            "shipping_amount": D("4.90"),
            "customer_id": "alice",
            "order_id": "o-1",
        }
        first = apply(ledger, RETAILER, code, None, idempotency_key="k-1", **body)
        for subtotal in (None, D("25.00")):  # the items' sum sent alongside is the same request
            again = apply(ledger, RETAILER, code.lower(), subtotal, idempotency_key="k-1", **body)
            assert (again.replayed, again.redemption_id, again.quote) == (True, first.redemption_id, first.quote)
        assert first.quote.free_shipping is True and first.quote.discount_amount == D("4.90")
        assert coupon(ledger, code).uses_count == 1
        assert customer_uses(ledger, code, "alice") == 1
        assert campaign_of(ledger, campaign.id).redemptions == 1

    @pytest.mark.parametrize(
        "changed",
        [
            {"items": [item("mug", "12.50", 3)]},
            {"items": [item("mug", "12.50", 2, category_id="other")]},
            {"items": [item("mug", "25.00", 1)]},
            {"shipping_amount": D("5.00")},
            {"shipping_amount": None},
            {"customer_id": "bob"},
            {"customer_id": None},
        ],
        ids=["quantity", "category", "same-sum-other-lines", "shipping", "no-shipping", "customer", "no-customer"],
    )
    def test_the_same_key_with_other_items_shipping_or_customer_is_key_reused(
        self, ledger: CouponLedger, changed: dict[str, Any]
    ) -> None:
        create_coupon(ledger, RETAILER, "TENOFF", PERCENTAGE, D("10"))
        body: dict[str, Any] = {
            "items": [item("mug", "12.50", 2, category_id="kitchen")],
            "shipping_amount": D("4.90"),
            "customer_id": "alice",
        }
        apply(ledger, RETAILER, "TENOFF", None, idempotency_key="k-1", **body)
        error = error_from(
            lambda: apply(ledger, RETAILER, "TENOFF", None, idempotency_key="k-1", **{**body, **changed})
        )
        assert (error.code, error.details) == ("IDEMPOTENCY_KEY_REUSED", {"idempotency_key": "k-1"})
        assert coupon(ledger, "TENOFF").uses_count == 1
        assert customer_uses(ledger, "TENOFF", "alice") == 1

    def test_items_versus_their_subtotal_alone_are_different_requests(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "TENOFF", PERCENTAGE, D("10"))
        apply(ledger, RETAILER, "TENOFF", None, idempotency_key="k-1", items=[item("mug", "25.00")])
        assert code_of(lambda: apply(ledger, RETAILER, "TENOFF", D("25.00"), idempotency_key="k-1")) == (
            "IDEMPOTENCY_KEY_REUSED"
        )

    def test_a_replay_of_a_reversed_redemption_returns_it_and_does_not_redeem_again(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "TENOFF", PERCENTAGE, D("10"), max_uses_per_customer=1)
        first = apply(ledger, RETAILER, "TENOFF", D("50.00"), idempotency_key="k-1", customer_id="alice")
        reverse(ledger, RETAILER, first.redemption_id)
        again = apply(ledger, RETAILER, "TENOFF", D("50.00"), idempotency_key="k-1", customer_id="alice")
        assert (again.replayed, again.redemption_id) == (True, first.redemption_id)
        assert (coupon(ledger, "TENOFF").uses_count, customer_uses(ledger, "TENOFF", "alice")) == (0, 0)


def test_items_are_lines_of_quantity_times_unit_price() -> None:
    line = Item(product_id="p", quantity=3, unit_price=Decimal("2.50"))
    assert line.total == Decimal("7.50")
    assert line.as_dict() == {"product_id": "p", "quantity": 3, "unit_price": "2.50"}
