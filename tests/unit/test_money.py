"""Money: parsing and formatting amounts, and the discount arithmetic (DESIGN.md sections 3 and 6.5)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ledger.domain import FIXED, PERCENTAGE, Coupon
from ledger.money import MAX_AMOUNT, format_amount, parse_amount, percentage_of

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
MAX_CENTS = 99_999_999_999_999  # 999999999999.99
SUBTOTAL_CENTS = st.integers(min_value=0, max_value=10**11)  # 0.00 .. 1000000000.00
PERCENT_HUNDREDTHS = st.integers(min_value=1, max_value=10_000)  # 0.01 .. 100.00
FIXED_CENTS = st.integers(min_value=1, max_value=MAX_CENTS)


def cents(amount: int) -> Decimal:
    """An integer number of cents as a two-place Decimal (100 -> Decimal('1.00'))."""
    return Decimal(amount).scaleb(-2)


def canonical(amount: int) -> str:
    return f"{amount // 100}.{amount % 100:02d}"


def coupon(discount_type: str, value: Decimal) -> Coupon:
    return Coupon(
        retailer_id=uuid4(),
        code="PROPERTY",
        discount_type=discount_type,
        discount_value=value,
        min_order_value=None,
        expires_at=None,
        max_uses=None,
        is_active=True,
    )


class TestParseAmount:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            (0, "0.00"),
            ("0", "0.00"),
            (5, "5.00"),
            ("19.9", "19.90"),
            ("19.99", "19.99"),
            (Decimal("1.5"), "1.50"),
            (" 12.34 ", "12.34"),
            ("1e2", "100.00"),
            ("999999999999.99", "999999999999.99"),
            (999_999_999_999, "999999999999.00"),
        ],
    )
    def test_accepts_ints_strings_and_decimals_as_two_place_decimals(self, raw: object, expected: str) -> None:
        amount = parse_amount(raw)
        assert isinstance(amount, Decimal)
        assert amount == Decimal(expected)
        assert amount.as_tuple().exponent == -2

    @pytest.mark.parametrize(("raw", "expected"), [(19.99, "19.99"), (0.1, "0.10"), (1234.5, "1234.50"), (7.0, "7.00")])
    def test_reads_a_float_through_its_shortest_repr(self, raw: float, expected: str) -> None:
        # Decimal(19.99) would be 19.989999999999998436805981327779591083526611328125.
        assert format_amount(parse_amount(raw)) == expected

    def test_the_maximum_amount_is_accepted_and_one_cent_more_is_not(self) -> None:
        assert parse_amount(str(MAX_AMOUNT)) == MAX_AMOUNT
        with pytest.raises(ValueError, match="must not exceed"):
            parse_amount(str(MAX_AMOUNT + Decimal("0.01")))

    @pytest.mark.parametrize("raw", [True, False, None, [], {}, b"1.00", object()])
    def test_rejects_bools_and_non_numeric_types(self, raw: object) -> None:
        with pytest.raises(ValueError, match="must be a number or a decimal string"):
            parse_amount(raw)

    @pytest.mark.parametrize("raw", ["", "   ", "abc", "1,00", "1.2.3", "12 34", "$5"])
    def test_rejects_strings_that_are_not_numbers(self, raw: str) -> None:
        with pytest.raises(ValueError, match="must be a number or a decimal string"):
            parse_amount(raw)

    @pytest.mark.parametrize("raw", ["NaN", "nan", "sNaN", float("nan"), Decimal("NaN")])
    def test_rejects_nan(self, raw: object) -> None:
        with pytest.raises(ValueError, match="must be a finite number"):
            parse_amount(raw)

    @pytest.mark.parametrize("raw", ["Infinity", "inf", "-inf", float("inf"), float("-inf"), Decimal("Infinity")])
    def test_rejects_infinity(self, raw: object) -> None:
        with pytest.raises(ValueError, match="must be a finite number"):
            parse_amount(raw)

    @pytest.mark.parametrize("raw", [-1, "-0.01", " -5 ", Decimal("-5"), -0.5])
    def test_rejects_negative_amounts(self, raw: object) -> None:
        with pytest.raises(ValueError, match="must not be negative"):
            parse_amount(raw)

    @pytest.mark.parametrize("raw", ["1.005", "0.001", Decimal("0.125"), 0.001, 0.1 + 0.2, "1e-3"])
    def test_rejects_more_than_two_decimal_places(self, raw: object) -> None:
        with pytest.raises(ValueError, match="must have at most two decimal places"):
            parse_amount(raw)

    @pytest.mark.parametrize("raw", [10**12, "1000000000000", "1e13", 1e16, Decimal("1E+20")])
    def test_rejects_amounts_above_the_maximum(self, raw: object) -> None:
        with pytest.raises(ValueError, match="must not exceed"):
            parse_amount(raw)

    @pytest.mark.parametrize("raw", ["-0", "-0.00", -0.0, Decimal("-0.00")])
    def test_negative_zero_is_read_as_plain_zero(self, raw: object) -> None:
        amount = parse_amount(raw)
        assert amount == 0
        assert not amount.is_signed()
        assert format_amount(amount) == "0.00"

    @given(SUBTOTAL_CENTS | st.just(MAX_CENTS))
    def test_every_two_place_string_round_trips_through_parse_and_format(self, amount: int) -> None:
        text = canonical(amount)
        assert parse_amount(text) == cents(amount)
        assert format_amount(parse_amount(text)) == text

    @given(st.integers(min_value=0, max_value=MAX_CENTS))
    def test_a_float_means_the_same_amount_as_its_decimal_string(self, amount: int) -> None:
        text = canonical(amount)
        assert parse_amount(float(text)) == parse_amount(text)


class TestFormatAmount:
    @pytest.mark.parametrize(
        ("amount", "expected"),
        [
            (Decimal("5"), "5.00"),
            (Decimal("1.5"), "1.50"),
            (Decimal("0"), "0.00"),
            (Decimal("0.10"), "0.10"),
            (Decimal("1E+2"), "100.00"),
            (MAX_AMOUNT, "999999999999.99"),
        ],
    )
    def test_formats_with_exactly_two_places_and_no_exponent(self, amount: Decimal, expected: str) -> None:
        assert format_amount(amount) == expected


class TestPercentageOf:
    @pytest.mark.parametrize(
        ("subtotal", "percent", "expected"),
        [
            ("0.05", "10", "0.01"),  # 0.005 -> half up (half-even would give 0.00)
            ("0.25", "10", "0.03"),  # 0.025 -> half up (half-even would give 0.02)
            ("0.04", "10", "0.00"),  # 0.004 -> down
            ("19.99", "12.5", "2.50"),  # 2.49875
            ("100.00", "33.33", "33.33"),
            ("100.00", "100", "100.00"),
            ("0.00", "50", "0.00"),
        ],
    )
    def test_rounds_half_up_to_the_cent(self, subtotal: str, percent: str, expected: str) -> None:
        result = percentage_of(Decimal(subtotal), Decimal(percent))
        assert result == Decimal(expected)
        assert result.as_tuple().exponent == -2

    @given(SUBTOTAL_CENTS, PERCENT_HUNDREDTHS)
    @example(5, 1_000)
    @example(25, 1_000)
    @example(10**11, 10_000)
    def test_matches_integer_cent_arithmetic_rounded_half_up(self, subtotal: int, hundredths: int) -> None:
        # subtotal = c/100, percent = p/100, discount = c*p/10^6 units = c*p/10^4 cents;
        # half up to the cent for a non-negative value is floor(x + 1/2) = (c*p + 5000) // 10000.
        expected = cents((subtotal * hundredths + 5_000) // 10_000)
        assert percentage_of(cents(subtotal), cents(hundredths)) == expected


class TestDiscountProperties:
    @given(SUBTOTAL_CENTS, PERCENT_HUNDREDTHS)
    @example(0, 10_000)
    @example(1, 1)
    @example(10**11, 10_000)
    def test_percentage_discount_is_exact_and_bounded(self, subtotal: int, hundredths: int) -> None:
        quote = coupon(PERCENTAGE, cents(hundredths)).quote(cents(subtotal), NOW)
        assert quote.original_subtotal == cents(subtotal)
        assert quote.discount_amount == cents((subtotal * hundredths + 5_000) // 10_000)
        assert quote.final_total == quote.original_subtotal - quote.discount_amount
        assert 0 <= quote.discount_amount <= quote.original_subtotal
        assert quote.final_total >= 0
        assert quote.discount_amount.as_tuple().exponent == -2
        assert quote.final_total.as_tuple().exponent == -2

    @given(SUBTOTAL_CENTS, FIXED_CENTS)
    @example(1_000, 1_500)
    @example(1_500, 1_500)
    @example(0, 1)
    def test_fixed_discount_is_the_value_capped_at_the_subtotal(self, subtotal: int, value: int) -> None:
        quote = coupon(FIXED, cents(value)).quote(cents(subtotal), NOW)
        assert quote.discount_amount == cents(min(value, subtotal))
        assert quote.final_total == quote.original_subtotal - quote.discount_amount
        assert 0 <= quote.discount_amount <= quote.original_subtotal
        assert quote.final_total >= 0
        assert quote.discount_amount.as_tuple().exponent == -2
        assert quote.final_total.as_tuple().exponent == -2
