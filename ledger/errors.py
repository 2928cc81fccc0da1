"""Domain errors. Each carries a stable machine code; the API maps codes to HTTP statuses."""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    code: str = "LEDGER_ERROR"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class CouponRefused(LedgerError):
    """This coupon cannot be used for this order: one of the rules checked, in the contract's
    order (``REFUSALS``), before a use is priced."""


class CouponNotFound(CouponRefused):
    code = "COUPON_NOT_FOUND"


class CouponCodeTaken(LedgerError):
    code = "COUPON_CODE_TAKEN"


class CouponInactive(CouponRefused):
    code = "COUPON_INACTIVE"


class CouponExpired(CouponRefused):
    code = "COUPON_EXPIRED"


class UsageLimitReached(CouponRefused):
    code = "USAGE_LIMIT_REACHED"


class MinOrderNotMet(CouponRefused):
    code = "MIN_ORDER_NOT_MET"


class IdempotencyKeyReused(LedgerError):
    code = "IDEMPOTENCY_KEY_REUSED"


class InvalidCoupon(LedgerError):
    """A command's arguments break a domain rule (bad code, value out of range)."""

    code = "VALIDATION_FAILED"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, errors=[{"field": field, "message": message}])


class LedgerBusy(LedgerError):
    """Too many concurrent writers on one coupon: the bounded retry loop gave up."""

    code = "SERVICE_UNAVAILABLE"


class StoreUnavailable(LedgerError):
    """The database could not be reached, or the connection was lost during a save, whose outcome
    is then unknown: nothing is acknowledged; a retry with the same idempotency key replays the
    redemption if it was stored after all, or makes it now."""

    code = "SERVICE_UNAVAILABLE"


class CouponNotStarted(CouponRefused):
    code = "COUPON_NOT_STARTED"


class CustomerIdRequired(CouponRefused):
    code = "CUSTOMER_ID_REQUIRED"


class CustomerLimitReached(CouponRefused):
    code = "CUSTOMER_LIMIT_REACHED"


class CampaignBudgetExhausted(CouponRefused):
    code = "CAMPAIGN_BUDGET_EXHAUSTED"


class CouponNotApplicable(CouponRefused):
    code = "COUPON_NOT_APPLICABLE"


class SubtotalMismatch(LedgerError):
    code = "SUBTOTAL_MISMATCH"


class FieldImmutable(LedgerError):
    code = "FIELD_IMMUTABLE"


class InvalidTransition(LedgerError):
    code = "INVALID_TRANSITION"


class RedemptionNotFound(LedgerError):
    code = "REDEMPTION_NOT_FOUND"


class CampaignNotFound(LedgerError):
    code = "CAMPAIGN_NOT_FOUND"


class ReservationNotFound(LedgerError):
    code = "RESERVATION_NOT_FOUND"


class ReservationExpired(LedgerError):
    code = "RESERVATION_EXPIRED"


# Every refusal of a coupon for an order, in the order the rules are checked: the first that
# fails is the one answered.
REFUSALS: tuple[type[CouponRefused], ...] = (
    CouponNotFound,
    CouponInactive,
    CouponNotStarted,
    CouponExpired,
    UsageLimitReached,
    CustomerIdRequired,
    CustomerLimitReached,
    CampaignBudgetExhausted,
    MinOrderNotMet,
    CouponNotApplicable,
)


def refusal_codes() -> list[str]:
    """The codes of the coupon refusals, in the order the rules are checked."""
    return [refusal.code for refusal in REFUSALS]
