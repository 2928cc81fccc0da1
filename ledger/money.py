"""Money: two-place Decimals, never floats, and the discount arithmetic."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
HUNDRED = Decimal(100)
MAX_AMOUNT = Decimal("999999999999.99")


def parse_amount(value: object) -> Decimal:
    """Parse a non-negative amount with at most two decimal places.

    Accepts int, str or Decimal; a float is read through its shortest repr so
    that JSON ``19.99`` means 19.99. Raises ValueError otherwise.
    """
    if isinstance(value, bool):
        raise ValueError("must be a number or a decimal string")
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, str):
        value = value.strip()
    if not isinstance(value, (int, str, Decimal)):
        raise ValueError("must be a number or a decimal string")
    try:
        amount = Decimal(value)
    except (InvalidOperation, ValueError):
        raise ValueError("must be a number or a decimal string") from None
    if not amount.is_finite():
        raise ValueError("must be a finite number")
    if amount < 0:
        raise ValueError("must not be negative")
    if amount > MAX_AMOUNT:
        raise ValueError(f"must not exceed {MAX_AMOUNT}")
    if amount != amount.quantize(CENT, rounding=ROUND_HALF_UP):
        raise ValueError("must have at most two decimal places")
    return amount.copy_abs().quantize(CENT)  # -0.00 is 0.00


def percentage_of(subtotal: Decimal, percent: Decimal) -> Decimal:
    return (subtotal * percent / HUNDRED).quantize(CENT, rounding=ROUND_HALF_UP)


def format_amount(amount: Decimal) -> str:
    return str(amount.quantize(CENT))
