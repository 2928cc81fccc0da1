"""What a shopper may see of a coupon's refusal (storefront and checkout-session routes, called
with a publishable key from a shop's pages): the rule that refused, never the coupon's counts,
limits or campaign."""

from __future__ import annotations

from api.errors import ApiError
from ledger.domain import ascii_upper
from ledger.errors import LedgerError

# The details of a refusal a shopper may see: the rule's own figures (the minimum order, the
# dates, the items that do not qualify), never the coupon's counts or limits or its campaign.
SHOPPER_DETAILS = frozenset(
    {
        "code",
        "starts_at",
        "expired_at",
        "required_minimum",
        "subtotal",
        "items_subtotal",
        "reason",
        "product_ids",
        "category_ids",
        "customer_id",
        "errors",
    }
)
# Refusals whose message names the coupon's limits or campaign, said without them.
SHOPPER_MESSAGES = {
    "USAGE_LIMIT_REACHED": "Coupon {code} has been used as many times as it may be.",
    "CUSTOMER_ID_REQUIRED": "Coupon {code} is limited per customer: send customer_id.",
    "CUSTOMER_LIMIT_REACHED": "This customer has used coupon {code} as many times as it may be.",
    "CAMPAIGN_BUDGET_EXHAUSTED": "Coupon {code} can no longer be used.",
}


def shopper_safe(error: LedgerError, code: str) -> LedgerError:
    """The refusal as a shopper may see it: the same code, the message and details without the
    coupon's limits, counts or campaign. Unchanged (the same object) when there is nothing to hide."""
    message = SHOPPER_MESSAGES.get(error.code)
    hidden = set(error.details) - SHOPPER_DETAILS
    if message is None and not hidden:
        return error
    details = {k: v for k, v in error.details.items() if k in SHOPPER_DETAILS}
    text = message.format(code=ascii_upper(code)) if message is not None else error.message
    return ApiError(error.code, text, **details)
