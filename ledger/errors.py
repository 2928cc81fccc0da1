"""Domain errors. Each carries a stable machine code; the API maps codes to HTTP statuses."""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    code: str = "LEDGER_ERROR"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class CouponNotFound(LedgerError):
    code = "COUPON_NOT_FOUND"


class CouponCodeTaken(LedgerError):
    code = "COUPON_CODE_TAKEN"


class CouponInactive(LedgerError):
    code = "COUPON_INACTIVE"


class CouponExpired(LedgerError):
    code = "COUPON_EXPIRED"


class UsageLimitReached(LedgerError):
    code = "USAGE_LIMIT_REACHED"


class MinOrderNotMet(LedgerError):
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


class CouponNotStarted(LedgerError):
    code = "COUPON_NOT_STARTED"


class CustomerIdRequired(LedgerError):
    code = "CUSTOMER_ID_REQUIRED"


class CustomerLimitReached(LedgerError):
    code = "CUSTOMER_LIMIT_REACHED"


class CampaignBudgetExhausted(LedgerError):
    code = "CAMPAIGN_BUDGET_EXHAUSTED"


class CouponNotApplicable(LedgerError):
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
