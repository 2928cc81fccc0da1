"""Shorthands for tests: each builds one of the ledger's commands and executes it.

``apply(ledger, retailer_id, code, subtotal, ...)`` is ``ledger.execute(Redeem(...))``; the others
likewise. ``also=work`` wraps the command in ``InTransaction`` and answers what the work returned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID

from ledger.application import CouponLedger
from ledger.campaigns import CampaignPlan
from ledger.campaigns import create_campaign as run_campaign
from ledger.commands import (
    Activate,
    Archive,
    Command,
    Confirm,
    CreateCoupon,
    Deactivate,
    ExpireHolds,
    Hold,
    HoldEnded,
    InTransaction,
    Receipt,
    Redeem,
    Release,
    Reserve,
    Reversal,
    Reverse,
    Transition,
    UpdateCoupon,
)
from ledger.domain import DEFAULT_HOLD_SECONDS, UNSET, Campaign, Coupon, Item, Order, Unset
from ledger.handlers import decide, needs


def _run(ledger: CouponLedger, command: Command[Any], also: Callable[[Any, Any], Any] | None = None) -> Any:
    if also is not None:
        command = InTransaction(command, also)
    return ledger.execute(command)


def create_coupon(
    ledger: CouponLedger,
    retailer_id: UUID,
    code: str,
    discount_type: str,
    discount_value: Decimal | None,
    min_order_value: Decimal | None = None,
    expires_at: datetime | None = None,
    max_uses: int | None = None,
    is_active: bool = True,
    **terms: Any,
) -> Coupon:
    fields = {
        "discount_type": discount_type,
        "discount_value": discount_value,
        "min_order_value": min_order_value,
        "expires_at": expires_at,
        "max_uses": max_uses,
        "is_active": is_active,
        **terms,
    }
    return ledger.execute(CreateCoupon(retailer_id, code, fields))


def update_coupon(ledger: CouponLedger, retailer_id: UUID, code: str, changes: Mapping[str, Any]) -> Coupon:
    return ledger.execute(UpdateCoupon(retailer_id, code, changes))


def deactivate(ledger: CouponLedger, retailer_id: UUID, code: str) -> Coupon:
    return ledger.execute(Deactivate(retailer_id, code))


def activate(ledger: CouponLedger, retailer_id: UUID, code: str, expires_at: datetime | Unset | None = UNSET) -> Coupon:
    return ledger.execute(Activate(retailer_id, code, expires_at))


def transition(
    ledger: CouponLedger, retailer_id: UUID, code: str, event: str, expires_at: datetime | Unset | None = UNSET
) -> Coupon:
    return ledger.execute(Transition(retailer_id, code, event, expires_at))


def archive(ledger: CouponLedger, retailer_id: UUID, code: str) -> Coupon:
    return ledger.execute(Archive(retailer_id, code))


def apply(
    ledger: CouponLedger,
    retailer_id: UUID,
    code: str,
    subtotal: Decimal | None,
    idempotency_key: str | None = None,
    order_id: str | None = None,
    also: Callable[[Any, Receipt], Any] | None = None,
    items: Sequence[Item] | None = None,
    shipping_amount: Decimal | None = None,
    customer_id: str | None = None,
) -> Receipt:
    order = Order.of(subtotal, items, shipping_amount)
    return _run(ledger, Redeem(retailer_id, code, order, idempotency_key, order_id, customer_id), also)


def reserve(
    ledger: CouponLedger,
    retailer_id: UUID,
    code: str,
    subtotal: Decimal | None,
    idempotency_key: str | None = None,
    order_id: str | None = None,
    items: Sequence[Item] | None = None,
    shipping_amount: Decimal | None = None,
    customer_id: str | None = None,
    ttl_seconds: int = DEFAULT_HOLD_SECONDS,
    release: UUID | None = None,
    also: Callable[[Any, Hold], Any] | None = None,
) -> Hold:
    order = Order.of(subtotal, items, shipping_amount)
    command = Reserve(retailer_id, code, order, idempotency_key, order_id, customer_id, ttl_seconds, release)
    return _run(ledger, command, also)


def confirm(
    ledger: CouponLedger,
    retailer_id: UUID,
    reservation_id: UUID,
    order_id: str | None = None,
    also: Callable[[Any, Receipt], Any] | None = None,
) -> Receipt:
    return _run(ledger, Confirm(retailer_id, reservation_id, order_id), also)


def release(
    ledger: CouponLedger, retailer_id: UUID, reservation_id: UUID, also: Callable[[Any, HoldEnded], Any] | None = None
) -> HoldEnded:
    return _run(ledger, Release(retailer_id, reservation_id), also)


def expire_reservations(ledger: CouponLedger, reservation_ids: Sequence[UUID]) -> int:
    return ledger.execute(ExpireHolds(tuple(reservation_ids)))


def reverse(ledger: CouponLedger, retailer_id: UUID, redemption_id: UUID, reason: str | None = None) -> Reversal:
    return ledger.execute(Reverse(retailer_id, redemption_id, reason))


def create_campaign(
    ledger: CouponLedger,
    retailer_id: UUID,
    name: str,
    prefix: str,
    count: int,
    template: Mapping[str, Any],
    max_redemptions: int | None = None,
    max_discount_total: Decimal | None = None,
    progress: Callable[[int], None] | None = None,
) -> Campaign:
    plan = CampaignPlan(retailer_id, name, prefix, count, template, max_redemptions, max_discount_total)
    return run_campaign(ledger, plan, progress)


def planned(command: Command[Any]) -> tuple[tuple[UUID, ...], Callable[[Any], Any]]:
    """What the ledger hands its writer for ``command``: the aggregates it needs and its decider
    (for tests that queue commands on the writer directly)."""
    return needs(command), partial(decide, command)


def redeem(
    retailer_id: UUID, code: str, subtotal: Decimal, idempotency_key: str | None = None, order_id: str | None = None
) -> tuple[tuple[UUID, ...], Callable[[Any], Any]]:
    return planned(Redeem(retailer_id, code, Order.of(subtotal), idempotency_key, order_id))


def call(ledger: CouponLedger, operation: str, *args: Any, **kwargs: Any) -> Any:
    """``operation`` by name: one of this module's shorthands, else the ledger's own method (validate)."""
    shorthand = globals().get(operation)
    if operation in SHORTHANDS and shorthand is not None:
        return shorthand(ledger, *args, **kwargs)
    return getattr(ledger, operation)(*args, **kwargs)


SHORTHANDS = frozenset(
    {"create_coupon", "update_coupon", "deactivate", "activate", "transition", "archive", "apply", "reserve"}
    | {"confirm", "release", "expire_reservations", "reverse", "create_campaign"}
)
