"""The coupon rules of DESIGN.md sections 3 and 6, through the CouponLedger application service.

TestCouponRules only uses the fixtures `ledger` (a CouponLedger whose clock is `clock`), `clock`
(a ManualClock) and `property_examples`; tests/integration/test_coupon_rules_postgres.py runs the
same class on PostgreSQL by providing those fixtures differently.
"""

from __future__ import annotations

from collections.abc import Callable, Sized
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger.writer as writer_module
from ledger.application import CouponLedger
from ledger.commands import Receipt
from ledger.domain import FIXED, PERCENTAGE, Coupon
from ledger.errors import LedgerBusy, UsageLimitReached
from ledger.timestamps import format_timestamp
from tests.support.commands import activate, apply, call, create_coupon, deactivate
from tests.support.ledger import OTHER_RETAILER, RETAILER, START, ManualClock, data_of, error_from, event_types, served

D = Decimal
BOTH_CHECKS = pytest.mark.parametrize("operation", ["validate", "apply"])
MALFORMED_CODES = ["ab", "  ab  ", "", "   ", "X" * 51, "SAVE 10", "SAVE!", "SAVE.10", "ÄBC", "SAVE\t10"]
# Non-ASCII letters that str.upper() would turn into ASCII ones, and non-ASCII spaces str.strip() would trim.
TRANSLITERATED_CODES = [
    "straße",
    "ﬁx10",
    "\u0131ce10",
    "\u3000SAVE10",
    "SAVE10\u00a0",
    "\uff33\uff21\uff36\uff2510",
    "SAVE\x0010",
]
MALFORMED_CODES += TRANSLITERATED_CODES


def check(ledger: CouponLedger, operation: str, code: str, subtotal: str, retailer: UUID = RETAILER) -> Any:
    """Validate or apply ``code`` to an order of ``subtotal``."""
    return call(ledger, operation, retailer, code, D(subtotal))


def uses(ledger: CouponLedger, code: str, retailer: UUID = RETAILER) -> int:
    return ledger.get_coupon(retailer, code).uses_count


class TestCouponRules:
    # ------------------------------------------------------------------ fixtures and helpers

    @pytest.fixture
    def sleeps(self, monkeypatch: pytest.MonkeyPatch) -> list[float]:
        """Replace the writer's backoff sleep after a conflict: record the delays instead of sleeping."""
        delays: list[float] = []
        monkeypatch.setattr(writer_module, "time", SimpleNamespace(sleep=delays.append))
        return delays

    @staticmethod
    def conflicting_saves(
        ledger: CouponLedger,
        monkeypatch: pytest.MonkeyPatch,
        conflicts: int,
        before_conflict: Callable[[Callable[..., Any], tuple[Any, ...]], None] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Make the first ``conflicts`` calls of ledger.save raise the store's IntegrityError.

        ``before_conflict(real_save, objects)`` runs before each simulated conflict, so a test can
        play the concurrent writer that won. Returns the objects of every save call.
        """
        real_save = ledger.save
        calls: list[tuple[Any, ...]] = []

        def save(*objects: Any, **kwargs: Any) -> Any:
            calls.append(objects)
            if len(calls) <= conflicts:
                if before_conflict is not None:
                    before_conflict(real_save, objects)
                raise IntegrityError("simulated version conflict")
            return real_save(*objects, **kwargs)

        monkeypatch.setattr(ledger, "save", save)
        return calls

    @staticmethod
    def counting_reads(ledger: CouponLedger) -> Callable[[], int]:
        """How many times the writer has read the store since this call (one query each)."""
        start = ledger.writer.stats.reads
        return lambda: ledger.writer.stats.reads - start

    # ------------------------------------------------------------------ codes

    def test_code_is_trimmed_and_upper_cased_on_create(self, ledger: CouponLedger) -> None:
        coupon = create_coupon(ledger, RETAILER, "  save10 ", PERCENTAGE, D("10"))
        assert coupon.code == "SAVE10"
        assert ledger.get_coupon(RETAILER, "SAVE10").code == "SAVE10"

    def test_code_lookup_ignores_case_and_surrounding_whitespace(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "SAVE10", PERCENTAGE, D("10"))
        assert ledger.get_coupon(RETAILER, " save10\n").code == "SAVE10"
        assert ledger.validate(RETAILER, "Save10 ", D("100.00")).code == "SAVE10"
        assert apply(ledger, RETAILER, "\tsave10", D("100.00")).quote.code == "SAVE10"
        assert uses(ledger, "SAVE10") == 1

    @pytest.mark.parametrize(("raw", "stored"), [("abc", "ABC"), ("a-b_9", "A-B_9"), ("x" * 50, "X" * 50)])
    def test_code_of_3_to_50_letters_digits_underscores_or_hyphens_is_accepted(
        self, ledger: CouponLedger, raw: str, stored: str
    ) -> None:
        assert create_coupon(ledger, RETAILER, raw, FIXED, D("5.00")).code == stored
        assert ledger.get_coupon(RETAILER, stored).code == stored

    @pytest.mark.parametrize("raw", MALFORMED_CODES)
    def test_malformed_code_is_rejected_on_create(self, ledger: CouponLedger, raw: str) -> None:
        error = error_from(lambda: create_coupon(ledger, RETAILER, raw, FIXED, D("5.00")))
        assert error.code == "VALIDATION_FAILED"
        assert [e["field"] for e in error.details["errors"]] == ["code"]

    @pytest.mark.parametrize("raw", MALFORMED_CODES)
    def test_looking_up_a_malformed_code_reports_coupon_not_found(self, ledger: CouponLedger, raw: str) -> None:
        lookups: list[Callable[[], object]] = [
            lambda: ledger.get_coupon(RETAILER, raw),
            lambda: ledger.validate(RETAILER, raw, D("10.00")),
            lambda: apply(ledger, RETAILER, raw, D("10.00")),
            lambda: apply(ledger, RETAILER, raw, D("10.00"), idempotency_key="key-1"),
            lambda: deactivate(ledger, RETAILER, raw),
            lambda: activate(ledger, RETAILER, raw),
            lambda: ledger.coupon_events(RETAILER, raw),
        ]
        assert [error_from(lookup).code for lookup in lookups] == ["COUPON_NOT_FOUND"] * len(lookups)

    @pytest.mark.parametrize(("raw", "lookalike"), [("straße", "STRASSE"), ("ﬁx10", "FIX10"), ("\u0131ce10", "ICE10")])
    def test_a_code_with_non_ascii_letters_never_finds_its_ascii_transliteration(
        self, ledger: CouponLedger, raw: str, lookalike: str
    ) -> None:
        create_coupon(ledger, RETAILER, lookalike, FIXED, D("5.00"))
        assert error_from(lambda: ledger.get_coupon(RETAILER, raw)).code == "COUPON_NOT_FOUND"
        assert error_from(lambda: apply(ledger, RETAILER, raw, D("10.00"))).code == "COUPON_NOT_FOUND"
        assert uses(ledger, lookalike) == 0

    # ------------------------------------------------------------------ uniqueness per retailer

    def test_second_coupon_with_the_same_code_is_refused_as_code_taken(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "SAVE10", PERCENTAGE, D("10"))
        error = error_from(lambda: create_coupon(ledger, RETAILER, " save10 ", FIXED, D("99.00")))
        assert error.code == "COUPON_CODE_TAKEN"
        assert error.details == {"code": "SAVE10"}
        coupon = ledger.get_coupon(RETAILER, "SAVE10")
        assert (coupon.discount_type, coupon.discount_value, coupon.version) == (PERCENTAGE, D("10"), 1)

    def test_same_code_under_another_retailer_is_a_separate_coupon(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "SAVE10", PERCENTAGE, D("10"))
        create_coupon(ledger, OTHER_RETAILER, "SAVE10", FIXED, D("3.00"))
        assert ledger.validate(RETAILER, "SAVE10", D("100.00")).discount_amount == D("10.00")
        assert ledger.validate(OTHER_RETAILER, "SAVE10", D("100.00")).discount_amount == D("3.00")
        apply(ledger, RETAILER, "SAVE10", D("100.00"))
        deactivate(ledger, RETAILER, "SAVE10")
        assert uses(ledger, "SAVE10", OTHER_RETAILER) == 0
        assert ledger.get_coupon(OTHER_RETAILER, "SAVE10").is_active
        assert ledger.get_coupon(RETAILER, "SAVE10").id != ledger.get_coupon(OTHER_RETAILER, "SAVE10").id

    def test_another_retailer_cannot_find_a_coupon(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "SAVE10", PERCENTAGE, D("10"))
        assert error_from(lambda: ledger.get_coupon(OTHER_RETAILER, "SAVE10")).code == "COUPON_NOT_FOUND"
        assert error_from(lambda: ledger.validate(OTHER_RETAILER, "SAVE10", D("100.00"))).code == "COUPON_NOT_FOUND"
        assert error_from(lambda: apply(ledger, OTHER_RETAILER, "SAVE10", D("100.00"))).code == "COUPON_NOT_FOUND"
        assert error_from(lambda: deactivate(ledger, OTHER_RETAILER, "SAVE10")).code == "COUPON_NOT_FOUND"
        assert uses(ledger, "SAVE10") == 0
        assert ledger.get_coupon(RETAILER, "SAVE10").is_active

    # ------------------------------------------------------------------ creation arguments

    @pytest.mark.parametrize("discount_type", [PERCENTAGE, FIXED])
    @pytest.mark.parametrize("value", ["0", "0.00", "-0.01", "-10"])
    def test_discount_value_must_be_greater_than_zero(
        self, ledger: CouponLedger, discount_type: str, value: str
    ) -> None:
        error = error_from(lambda: create_coupon(ledger, RETAILER, "BAD", discount_type, D(value)))
        assert error.code == "VALIDATION_FAILED"
        assert [e["field"] for e in error.details["errors"]] == ["discount_value"]

    def test_percentage_may_be_at_most_100(self, ledger: CouponLedger) -> None:
        error = error_from(lambda: create_coupon(ledger, RETAILER, "TOOMUCH", PERCENTAGE, D("100.01")))
        assert error.code == "VALIDATION_FAILED"
        assert [e["field"] for e in error.details["errors"]] == ["discount_value"]
        create_coupon(ledger, RETAILER, "ALLOFIT", PERCENTAGE, D("100"))
        assert ledger.validate(RETAILER, "ALLOFIT", D("42.42")).final_total == D("0.00")

    def test_fixed_value_may_exceed_100(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "BIGFIXED", FIXED, D("250.00"))
        assert ledger.validate(RETAILER, "BIGFIXED", D("1000.00")).discount_amount == D("250.00")

    def test_unknown_discount_type_is_rejected(self, ledger: CouponLedger) -> None:
        error = error_from(lambda: create_coupon(ledger, RETAILER, "ODD", "bogus", D("5")))
        assert error.code == "VALIDATION_FAILED"
        assert [e["field"] for e in error.details["errors"]] == ["discount_type"]

    @pytest.mark.parametrize("max_uses", [0, -1])
    def test_max_uses_must_be_at_least_one(self, ledger: CouponLedger, max_uses: int) -> None:
        error = error_from(lambda: create_coupon(ledger, RETAILER, "LIMITED", FIXED, D("5.00"), max_uses=max_uses))
        assert error.code == "VALIDATION_FAILED"
        assert [e["field"] for e in error.details["errors"]] == ["max_uses"]
        assert create_coupon(ledger, RETAILER, "LIMITED", FIXED, D("5.00"), max_uses=1).max_uses == 1

    def test_a_rejected_create_saves_nothing(self, ledger: CouponLedger) -> None:
        error_from(lambda: create_coupon(ledger, RETAILER, "SAVE10", PERCENTAGE, D("101")))
        assert error_from(lambda: ledger.get_coupon(RETAILER, "SAVE10")).code == "COUPON_NOT_FOUND"
        assert create_coupon(ledger, RETAILER, "SAVE10", PERCENTAGE, D("10")).version == 1

    # ------------------------------------------------------------------ quotes

    @BOTH_CHECKS
    def test_percentage_discount_is_rounded_half_up_to_the_cent(self, ledger: CouponLedger, operation: str) -> None:
        create_coupon(ledger, RETAILER, "EIGHTH", PERCENTAGE, D("12.5"))
        quote = check(ledger, operation, "EIGHTH", "19.99")
        quote = quote.quote if isinstance(quote, Receipt) else quote
        assert (quote.code, quote.original_subtotal, quote.discount_amount, quote.final_total) == (
            "EIGHTH",
            D("19.99"),
            D("2.50"),  # 2.49875
            D("17.49"),
        )
        assert quote.free_shipping is False

    def test_fixed_discount_is_capped_at_the_subtotal(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "FIFTEEN", FIXED, D("15.00"))
        quote = ledger.validate(RETAILER, "FIFTEEN", D("10.00"))
        assert (quote.discount_amount, quote.final_total) == (D("10.00"), D("0.00"))
        quote = ledger.validate(RETAILER, "FIFTEEN", D("15.01"))
        assert (quote.discount_amount, quote.final_total) == (D("15.00"), D("0.01"))

    # ------------------------------------------------------------------ validation errors

    @BOTH_CHECKS
    def test_unknown_code_is_coupon_not_found(self, ledger: CouponLedger, operation: str) -> None:
        create_coupon(ledger, RETAILER, "SAVE10", PERCENTAGE, D("10"))
        assert error_from(lambda: check(ledger, operation, "SAVE11", "100.00")).code == "COUPON_NOT_FOUND"

    @BOTH_CHECKS
    def test_inactive_coupon_is_refused(self, ledger: CouponLedger, operation: str) -> None:
        create_coupon(ledger, RETAILER, "DORMANT", PERCENTAGE, D("10"), is_active=False)
        create_coupon(ledger, RETAILER, "PAUSED", PERCENTAGE, D("10"))
        deactivate(ledger, RETAILER, "PAUSED")
        assert error_from(lambda: check(ledger, operation, "DORMANT", "100.00")).code == "COUPON_INACTIVE"
        assert error_from(lambda: check(ledger, operation, "PAUSED", "100.00")).code == "COUPON_INACTIVE"

    @BOTH_CHECKS
    def test_coupon_is_usable_until_just_before_expires_at(
        self, ledger: CouponLedger, clock: ManualClock, operation: str
    ) -> None:
        create_coupon(ledger, RETAILER, "SOON", FIXED, D("5.00"), expires_at=START + timedelta(hours=1))
        clock.set(START + timedelta(hours=1) - timedelta(microseconds=1))
        check(ledger, operation, "SOON", "20.00")

    @BOTH_CHECKS
    def test_coupon_is_expired_exactly_at_expires_at(
        self, ledger: CouponLedger, clock: ManualClock, operation: str
    ) -> None:
        expires_at = START + timedelta(hours=1)
        create_coupon(ledger, RETAILER, "SOON", FIXED, D("5.00"), expires_at=expires_at)
        clock.set(expires_at)
        error = error_from(lambda: check(ledger, operation, "SOON", "20.00"))
        assert error.code == "COUPON_EXPIRED"
        assert error.details == {"expired_at": format_timestamp(expires_at)}
        clock.advance(timedelta(days=400))
        assert error_from(lambda: check(ledger, operation, "SOON", "20.00")).code == "COUPON_EXPIRED"
        assert uses(ledger, "SOON") == 0

    @BOTH_CHECKS
    def test_usage_limit_reached_after_max_uses(self, ledger: CouponLedger, operation: str) -> None:
        create_coupon(ledger, RETAILER, "TWICE", FIXED, D("5.00"), max_uses=2)
        apply(ledger, RETAILER, "TWICE", D("20.00"))
        assert ledger.validate(RETAILER, "TWICE", D("20.00")).discount_amount == D("5.00")  # one use left
        apply(ledger, RETAILER, "TWICE", D("20.00"), idempotency_key="second")
        error = error_from(lambda: check(ledger, operation, "TWICE", "20.00"))
        assert error.code == "USAGE_LIMIT_REACHED"
        assert error.details == {"max_uses": 2}
        assert uses(ledger, "TWICE") == 2

    @BOTH_CHECKS
    def test_min_order_not_met_names_the_minimum_and_the_subtotal_as_strings(
        self, ledger: CouponLedger, operation: str
    ) -> None:
        create_coupon(ledger, RETAILER, "BIGSPEND", PERCENTAGE, D("10"), min_order_value=D("50"))
        error = error_from(lambda: check(ledger, operation, "BIGSPEND", "49.99"))
        assert error.code == "MIN_ORDER_NOT_MET"
        assert error.details == {"required_minimum": "50.00", "subtotal": "49.99"}

    @BOTH_CHECKS
    def test_subtotal_equal_to_the_minimum_is_accepted(self, ledger: CouponLedger, operation: str) -> None:
        create_coupon(ledger, RETAILER, "BIGSPEND", PERCENTAGE, D("10"), min_order_value=D("50.00"))
        check(ledger, operation, "BIGSPEND", "50.00")

    def test_a_refused_apply_records_nothing(self, ledger: CouponLedger, clock: ManualClock) -> None:
        create_coupon(
            ledger,
            RETAILER,
            "PICKY",
            FIXED,
            D("5.00"),
            min_order_value=D("50.00"),
            expires_at=START + timedelta(days=1),
        )
        error_from(lambda: apply(ledger, RETAILER, "PICKY", D("10.00"), idempotency_key="k1"))
        clock.advance(timedelta(days=2))
        error_from(lambda: apply(ledger, RETAILER, "PICKY", D("60.00"), idempotency_key="k2"))
        coupon = ledger.get_coupon(RETAILER, "PICKY")
        assert (coupon.version, coupon.uses_count) == (1, 0)
        assert event_types(ledger, "PICKY") == ["Coupon.Created"]

    # ------------------------------------------------------------------ validation order

    def make_coupon_breaking_every_rule(self, ledger: CouponLedger, clock: ManualClock) -> None:
        """LAYERED: inactive, expired, used up, and with a minimum above the test orders' 10.00."""
        create_coupon(
            ledger,
            RETAILER,
            "LAYERED",
            PERCENTAGE,
            D("10"),
            min_order_value=D("50.00"),
            expires_at=START + timedelta(hours=1),
            max_uses=1,
        )
        apply(ledger, RETAILER, "LAYERED", D("60.00"))
        deactivate(ledger, RETAILER, "LAYERED")
        clock.set(START + timedelta(hours=2))

    @BOTH_CHECKS
    def test_inactive_beats_expired_limit_and_min_order_in_validation_order(
        self, ledger: CouponLedger, clock: ManualClock, operation: str
    ) -> None:
        self.make_coupon_breaking_every_rule(ledger, clock)
        assert error_from(lambda: check(ledger, operation, "LAYERED", "10.00")).code == "COUPON_INACTIVE"

    @BOTH_CHECKS
    def test_expired_beats_limit_and_min_order_in_validation_order(
        self, ledger: CouponLedger, clock: ManualClock, operation: str
    ) -> None:
        self.make_coupon_breaking_every_rule(ledger, clock)
        activate(ledger, RETAILER, "LAYERED")
        assert error_from(lambda: check(ledger, operation, "LAYERED", "10.00")).code == "COUPON_EXPIRED"

    @BOTH_CHECKS
    def test_limit_beats_min_order_in_validation_order(
        self, ledger: CouponLedger, clock: ManualClock, operation: str
    ) -> None:
        self.make_coupon_breaking_every_rule(ledger, clock)
        activate(ledger, RETAILER, "LAYERED")
        clock.set(START)
        assert error_from(lambda: check(ledger, operation, "LAYERED", "10.00")).code == "USAGE_LIMIT_REACHED"

    @BOTH_CHECKS
    def test_min_order_is_checked_last(self, ledger: CouponLedger, clock: ManualClock, operation: str) -> None:
        self.make_coupon_breaking_every_rule(ledger, clock)
        activate(ledger, RETAILER, "LAYERED")
        clock.set(START)
        create_coupon(ledger, RETAILER, "FRESH", PERCENTAGE, D("10"), min_order_value=D("50.00"), max_uses=1)
        assert error_from(lambda: check(ledger, operation, "FRESH", "10.00")).code == "MIN_ORDER_NOT_MET"
        assert error_from(lambda: check(ledger, operation, "LAYERED", "60.00")).code == "USAGE_LIMIT_REACHED"

    # ------------------------------------------------------------------ what validate and apply consume

    def test_validate_consumes_nothing(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "ONCE", FIXED, D("5.00"), max_uses=1)
        for _ in range(5):
            ledger.validate(RETAILER, "ONCE", D("20.00"))
        coupon = ledger.get_coupon(RETAILER, "ONCE")
        assert (coupon.version, coupon.uses_count) == (1, 0)
        assert event_types(ledger, "ONCE") == ["Coupon.Created"]
        apply(ledger, RETAILER, "ONCE", D("20.00"))
        assert uses(ledger, "ONCE") == 1

    def test_apply_increments_uses_count_by_exactly_one(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "MANY", FIXED, D("5.00"))
        for expected in (1, 2, 3):
            receipt = apply(ledger, RETAILER, "MANY", D("20.00"))
            assert receipt.replayed is False
            coupon = ledger.get_coupon(RETAILER, "MANY")
            assert (coupon.uses_count, coupon.version) == (expected, expected + 1)
        assert event_types(ledger, "MANY") == ["Coupon.Created"] + ["Coupon.Redeemed"] * 3

    def test_applies_without_a_key_are_separate_redemptions(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "MANY", FIXED, D("5.00"))
        first = apply(ledger, RETAILER, "MANY", D("20.00"), order_id="o-1")
        second = apply(ledger, RETAILER, "MANY", D("20.00"), order_id="o-1")
        assert first.redemption_id != second.redemption_id
        assert uses(ledger, "MANY") == 2

    # ------------------------------------------------------------------ activate / deactivate

    def test_deactivated_coupon_can_be_activated_again(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "TOGGLE", FIXED, D("5.00"))
        assert deactivate(ledger, RETAILER, "TOGGLE").is_active is False
        assert activate(ledger, RETAILER, "TOGGLE").is_active is True
        assert apply(ledger, RETAILER, "TOGGLE", D("20.00")).quote.discount_amount == D("5.00")

    def test_deactivating_twice_adds_one_event(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "TOGGLE", FIXED, D("5.00"))
        deactivate(ledger, RETAILER, "TOGGLE")
        again = deactivate(ledger, RETAILER, "TOGGLE")
        assert again.is_active is False
        assert ledger.get_coupon(RETAILER, "TOGGLE").version == 2
        assert event_types(ledger, "TOGGLE") == ["Coupon.Created", "Coupon.Deactivated"]

    def test_activating_an_active_coupon_adds_no_event(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "TOGGLE", FIXED, D("5.00"))
        activate(ledger, RETAILER, "TOGGLE")
        assert ledger.get_coupon(RETAILER, "TOGGLE").version == 1
        deactivate(ledger, RETAILER, "TOGGLE")
        activate(ledger, RETAILER, "TOGGLE")
        activate(ledger, RETAILER, "TOGGLE")
        assert event_types(ledger, "TOGGLE") == ["Coupon.Created", "Coupon.Deactivated", "Coupon.Activated"]

    # ------------------------------------------------------------------ idempotent apply

    def test_replay_returns_the_original_redemption_and_quote(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "SAVE10", PERCENTAGE, D("10"))
        first = apply(ledger, RETAILER, "SAVE10", D("100.00"), idempotency_key="key-1", order_id="o-1")
        again = apply(ledger, RETAILER, "SAVE10", D("100.00"), idempotency_key="key-1", order_id="o-1")
        assert first.replayed is False
        assert again.replayed is True
        assert again.redemption_id == first.redemption_id
        assert again.quote == first.quote

    def test_replay_does_not_count_twice(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "SAVE10", PERCENTAGE, D("10"), max_uses=5)
        for _ in range(3):
            apply(ledger, RETAILER, "SAVE10", D("100.00"), idempotency_key="key-1")
        assert uses(ledger, "SAVE10") == 1
        assert event_types(ledger, "SAVE10") == ["Coupon.Created", "Coupon.Redeemed"]

    def test_replay_accepts_the_code_written_differently(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "SAVE10", PERCENTAGE, D("10"))
        first = apply(ledger, RETAILER, "SAVE10", D("100.00"), idempotency_key="key-1")
        again = apply(ledger, RETAILER, " save10 ", D("100.00"), idempotency_key="key-1")
        assert (again.replayed, again.redemption_id) == (True, first.redemption_id)
        assert uses(ledger, "SAVE10") == 1

    def test_replay_still_answers_after_the_coupon_became_unusable(
        self, ledger: CouponLedger, clock: ManualClock
    ) -> None:
        create_coupon(ledger, RETAILER, "ONCE", FIXED, D("5.00"), max_uses=1, expires_at=START + timedelta(hours=1))
        first = apply(ledger, RETAILER, "ONCE", D("20.00"), idempotency_key="key-1")
        deactivate(ledger, RETAILER, "ONCE")
        clock.advance(timedelta(hours=2))
        again = apply(ledger, RETAILER, "ONCE", D("20.00"), idempotency_key="key-1")
        assert (again.replayed, again.redemption_id, again.quote) == (True, first.redemption_id, first.quote)
        assert uses(ledger, "ONCE") == 1

    @pytest.mark.parametrize(
        "changed",
        [
            {"subtotal": D("100.01")},
            {"code": "OTHER10"},
            {"order_id": "o-2"},
            {"order_id": None},
        ],
        ids=["subtotal", "code", "order_id", "no-order_id"],
    )
    def test_same_key_with_a_different_request_is_refused(self, ledger: CouponLedger, changed: dict[str, Any]) -> None:
        create_coupon(ledger, RETAILER, "SAVE10", PERCENTAGE, D("10"))
        create_coupon(ledger, RETAILER, "OTHER10", PERCENTAGE, D("10"))
        original = {"code": "SAVE10", "subtotal": D("100.00"), "order_id": "o-1"}
        apply(ledger, RETAILER, idempotency_key="key-1", **original)
        error = error_from(lambda: apply(ledger, RETAILER, idempotency_key="key-1", **{**original, **changed}))
        assert error.code == "IDEMPOTENCY_KEY_REUSED"
        assert error.details == {"idempotency_key": "key-1"}
        assert (uses(ledger, "SAVE10"), uses(ledger, "OTHER10")) == (1, 0)

    def test_idempotency_keys_are_scoped_per_retailer(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "SAVE10", PERCENTAGE, D("10"))
        create_coupon(ledger, OTHER_RETAILER, "SAVE10", PERCENTAGE, D("10"))
        mine = apply(ledger, RETAILER, "SAVE10", D("100.00"), idempotency_key="key-1")
        theirs = apply(ledger, OTHER_RETAILER, "SAVE10", D("70.00"), idempotency_key="key-1")
        assert (mine.replayed, theirs.replayed) == (False, False)
        assert mine.redemption_id != theirs.redemption_id
        assert theirs.quote.discount_amount == D("7.00")
        assert (uses(ledger, "SAVE10"), uses(ledger, "SAVE10", OTHER_RETAILER)) == (1, 1)

    def test_different_keys_are_different_redemptions(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "SAVE10", PERCENTAGE, D("10"))
        first = apply(ledger, RETAILER, "SAVE10", D("100.00"), idempotency_key="key-1")
        second = apply(ledger, RETAILER, "SAVE10", D("100.00"), idempotency_key="key-2")
        assert second.replayed is False
        assert first.redemption_id != second.redemption_id
        assert uses(ledger, "SAVE10") == 2

    # ------------------------------------------------------------------ status

    def test_status_is_active_for_a_usable_coupon(self, ledger: CouponLedger, clock: ManualClock) -> None:
        coupon = create_coupon(ledger, RETAILER, "FINE", FIXED, D("5.00"), max_uses=2, expires_at=START + timedelta(1))
        assert coupon.status(clock()) == "active"

    def test_status_is_inactive_once_deactivated(self, ledger: CouponLedger, clock: ManualClock) -> None:
        create_coupon(ledger, RETAILER, "OFF", FIXED, D("5.00"))
        assert deactivate(ledger, RETAILER, "OFF").status(clock()) == "inactive"

    def test_status_is_time_expired_from_expires_at(self, ledger: CouponLedger, clock: ManualClock) -> None:
        create_coupon(ledger, RETAILER, "SOON", FIXED, D("5.00"), expires_at=START + timedelta(hours=1))
        coupon = ledger.get_coupon(RETAILER, "SOON")
        assert coupon.status(START + timedelta(hours=1) - timedelta(microseconds=1)) == "active"
        assert coupon.status(START + timedelta(hours=1)) == "time_expired"
        clock.advance(timedelta(hours=3))
        assert coupon.status(clock()) == "time_expired"

    def test_status_is_count_expired_when_uses_reach_max_uses(self, ledger: CouponLedger, clock: ManualClock) -> None:
        create_coupon(ledger, RETAILER, "TWICE", FIXED, D("5.00"), max_uses=2)
        apply(ledger, RETAILER, "TWICE", D("20.00"))
        assert ledger.get_coupon(RETAILER, "TWICE").status(clock()) == "active"
        apply(ledger, RETAILER, "TWICE", D("20.00"))
        assert ledger.get_coupon(RETAILER, "TWICE").status(clock()) == "count_expired"

    def test_status_inactive_beats_time_expired_beats_count_expired(
        self, ledger: CouponLedger, clock: ManualClock
    ) -> None:
        self.make_coupon_breaking_every_rule(ledger, clock)
        assert ledger.get_coupon(RETAILER, "LAYERED").status(clock()) == "inactive"
        activate(ledger, RETAILER, "LAYERED")
        assert ledger.get_coupon(RETAILER, "LAYERED").status(clock()) == "time_expired"
        assert ledger.get_coupon(RETAILER, "LAYERED").status(START) == "count_expired"

    # ------------------------------------------------------------------ event history

    def test_coupon_events_list_created_redeemed_deactivated_in_version_order(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "SAVE10", PERCENTAGE, D("10"), min_order_value=D("20.00"), max_uses=3)
        receipt = apply(ledger, RETAILER, "SAVE10", D("100.00"), order_id="o-1")
        deactivate(ledger, RETAILER, "SAVE10")
        events = ledger.coupon_events(RETAILER, "save10")
        assert [(e.version, e.type) for e in events] == [
            (1, "Coupon.Created"),
            (2, "Coupon.Redeemed"),
            (3, "Coupon.Deactivated"),
        ]
        created, redeemed, deactivated = (data_of(e) for e in events)
        assert created["code"] == "SAVE10"
        assert created["retailer_id"] == str(RETAILER)
        assert (created["discount_type"], created["discount_value"], created["max_uses"]) == (PERCENTAGE, "10.00", 3)
        assert redeemed == served(
            {
                "redemption_id": receipt.redemption_id,
                "original_subtotal": D("100.00"),
                "discount_amount": D("10.00"),
                "final_total": D("90.00"),
                "order_id": "o-1",
                "reservation_id": None,  # a plain apply: no hold confirmed
                "customer_id": None,  # none was sent
            }
        )
        assert deactivated == {}

    def test_coupon_events_page_with_after_version_and_limit(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "PAGED", FIXED, D("5.00"))
        for _ in range(3):
            apply(ledger, RETAILER, "PAGED", D("20.00"))
        deactivate(ledger, RETAILER, "PAGED")

        def page(after_version: int, limit: int) -> list[int]:
            return [e.version for e in ledger.coupon_events(RETAILER, "PAGED", after_version, limit)]

        assert page(0, 100) == [1, 2, 3, 4, 5]
        assert page(0, 2) == [1, 2]
        assert page(2, 2) == [3, 4]
        assert page(4, 2) == [5]
        assert page(5, 2) == []
        assert ledger.coupon_events(RETAILER, "PAGED", after_version=4)[0].type == "Coupon.Deactivated"

    def test_coupon_state_does_not_grow_with_redemptions(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "BUSY", FIXED, D("1.00"))

        def shape(coupon: Coupon) -> dict[str, int | None]:
            return {
                k: len(v) if isinstance(v, Sized) and not isinstance(v, str) else None for k, v in vars(coupon).items()
            }

        apply(ledger, RETAILER, "BUSY", D("5.00"), idempotency_key="key-0")
        after_one = ledger.get_coupon(RETAILER, "BUSY")
        for n in range(1, 50):
            apply(ledger, RETAILER, "BUSY", D("5.00"), idempotency_key=f"key-{n}")
        after_fifty = ledger.get_coupon(RETAILER, "BUSY")
        assert after_fifty.uses_count == 50
        assert shape(after_fifty) == shape(after_one)

    # ------------------------------------------------------------------ the usage limit, for any numbers

    def test_successes_equal_min_of_attempts_and_max_uses_and_the_rest_hit_the_limit(
        self, ledger: CouponLedger, property_examples: int
    ) -> None:
        @settings(
            max_examples=property_examples,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(max_uses=st.integers(min_value=1, max_value=20), attempts=st.integers(min_value=0, max_value=40))
        def limit_holds(max_uses: int, attempts: int) -> None:
            retailer = uuid4()  # a fresh coupon for every example, in the same ledger
            create_coupon(ledger, retailer, "LIMIT", FIXED, D("1.00"), max_uses=max_uses)
            outcomes = []
            for _ in range(attempts):
                try:
                    apply(ledger, retailer, "LIMIT", D("10.00"))
                    outcomes.append("ok")
                except UsageLimitReached:
                    outcomes.append("USAGE_LIMIT_REACHED")
            successes = min(attempts, max_uses)
            assert outcomes == ["ok"] * successes + ["USAGE_LIMIT_REACHED"] * (attempts - successes)
            assert uses(ledger, "LIMIT", retailer) == successes

        limit_holds()

    # ------------------------------------------------------------------ the bounded retry loop

    def test_conflicting_save_is_retried_until_it_succeeds(
        self, ledger: CouponLedger, monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
    ) -> None:
        create_coupon(ledger, RETAILER, "RACE", FIXED, D("5.00"), max_uses=10)
        saves = self.conflicting_saves(ledger, monkeypatch, conflicts=3)
        receipt = apply(ledger, RETAILER, "RACE", D("20.00"))
        assert receipt.replayed is False
        assert len(saves) == 4
        assert ledger.version_conflicts == 3
        assert len(sleeps) == 3
        assert all(0 <= delay <= 0.02 for delay in sleeps)
        assert uses(ledger, "RACE") == 1
        assert event_types(ledger, "RACE") == ["Coupon.Created", "Coupon.Redeemed"]

    def test_retry_rereads_and_rechecks_the_coupon(
        self, ledger: CouponLedger, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
    ) -> None:
        coupon_id = create_coupon(ledger, RETAILER, "LAST", FIXED, D("5.00"), max_uses=1).id

        def another_writer_takes_the_last_use(real_save: Callable[..., Any], objects: tuple[Any, ...]) -> None:
            winner: Coupon = ledger.repository.get(coupon_id)
            winner.redeem(uuid4(), D("30.00"), clock(), "winner")
            real_save(winner)

        saves = self.conflicting_saves(ledger, monkeypatch, 1, another_writer_takes_the_last_use)
        reads = self.counting_reads(ledger)
        error = error_from(lambda: apply(ledger, RETAILER, "LAST", D("20.00")))
        assert error.code == "USAGE_LIMIT_REACHED"
        # Decided on the coupon as this writer stored it (no read), refused at the save, read once
        # afresh and refused: nothing more to save.
        assert (reads(), len(saves)) == (1, 1)
        coupon = ledger.get_coupon(RETAILER, "LAST")
        assert coupon.uses_count == 1
        assert ledger.coupon_events(RETAILER, "LAST")[-1].data["order_id"] == "winner"

    def test_a_real_version_conflict_is_retried_on_a_fresh_read(
        self, ledger: CouponLedger, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
    ) -> None:
        coupon_id = create_coupon(ledger, RETAILER, "RACE", FIXED, D("5.00"), max_uses=2).id
        real_save = ledger.save
        other_writes: list[str] = []

        def another_process_saves_first(*objects: Any, **kwargs: Any) -> Any:
            if not other_writes:  # after our writer read the coupon, before it saves
                other: Coupon = ledger.repository.get(coupon_id)
                other.redeem(uuid4(), D("20.00"), clock(), "other")
                real_save(other)
                other_writes.append("other")
            return real_save(*objects, **kwargs)  # the store itself now rejects our version

        monkeypatch.setattr(ledger, "save", another_process_saves_first)
        receipt = apply(ledger, RETAILER, "RACE", D("20.00"))
        assert receipt.replayed is False
        assert ledger.version_conflicts == 1
        assert uses(ledger, "RACE") == 2
        assert event_types(ledger, "RACE") == ["Coupon.Created", "Coupon.Redeemed", "Coupon.Redeemed"]
        assert [e.data["order_id"] for e in ledger.coupon_events(RETAILER, "RACE")[1:]] == ["other", None]

    def test_a_keyed_apply_that_loses_to_its_twin_replays_the_twin(
        self, ledger: CouponLedger, monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
    ) -> None:
        create_coupon(ledger, RETAILER, "TWIN", FIXED, D("5.00"))

        def the_twin_request_saves_first(real_save: Callable[..., Any], objects: tuple[Any, ...]) -> None:
            real_save(*objects)

        self.conflicting_saves(ledger, monkeypatch, 1, the_twin_request_saves_first)
        receipt = apply(ledger, RETAILER, "TWIN", D("20.00"), idempotency_key="key-1")
        assert receipt.replayed is True
        assert uses(ledger, "TWIN") == 1
        fresh = apply(ledger, RETAILER, "TWIN", D("20.00"), idempotency_key="key-1")
        assert (fresh.replayed, fresh.redemption_id) == (True, receipt.redemption_id)

    def test_gives_up_with_ledger_busy_after_max_attempts(
        self, ledger: CouponLedger, monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
    ) -> None:
        create_coupon(ledger, RETAILER, "HOT", FIXED, D("5.00"))
        monkeypatch.setattr(ledger.writer, "max_attempts", 3)
        saves = self.conflicting_saves(ledger, monkeypatch, conflicts=10**6)
        error = error_from(lambda: apply(ledger, RETAILER, "hot", D("20.00")))
        assert isinstance(error, LedgerBusy)
        assert error.code == "SERVICE_UNAVAILABLE"
        assert "retry_after" in error.details
        assert len(saves) == 3
        assert ledger.version_conflicts == 3
        assert uses(ledger, "HOT") == 0
        assert event_types(ledger, "HOT") == ["Coupon.Created"]

    def test_deactivate_is_retried_on_conflict_and_recorded_once(
        self, ledger: CouponLedger, monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
    ) -> None:
        create_coupon(ledger, RETAILER, "TOGGLE", FIXED, D("5.00"))
        saves = self.conflicting_saves(ledger, monkeypatch, conflicts=2)
        assert deactivate(ledger, RETAILER, "TOGGLE").is_active is False
        assert len(saves) == 3
        assert event_types(ledger, "TOGGLE") == ["Coupon.Created", "Coupon.Deactivated"]

    def test_a_domain_error_is_not_retried(
        self, ledger: CouponLedger, monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
    ) -> None:
        create_coupon(ledger, RETAILER, "OFF", FIXED, D("5.00"), is_active=False)
        saves = self.conflicting_saves(ledger, monkeypatch, conflicts=0)
        reads = self.counting_reads(ledger)
        assert error_from(lambda: apply(ledger, RETAILER, "OFF", D("20.00"))).code == "COUPON_INACTIVE"
        assert (reads(), len(saves), len(sleeps), ledger.version_conflicts) == (1, 0, 0, 0)
