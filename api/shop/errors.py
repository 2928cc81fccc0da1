"""The shop's refusals: each a ``ShopError`` with the contract's code (api/errors.py maps every
code to its status, as for the ledger's), and the one signal of a lost optimistic race."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.errors import LedgerError
from ledger.timestamps import format_timestamp


class ShopError(LedgerError):
    """A refusal of the products, orders or checkout sessions, with its contract code."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.code = code


class SessionChanged(Exception):
    """The session changed since it was read: the change is not saved, and is made again."""


@dataclass(frozen=True)
class Shortage:
    product_id: int
    requested: int
    available: int


def invalid(field: str, message: str) -> ShopError:
    return ShopError("VALIDATION_FAILED", "The request is not valid.", errors=[{"field": field, "message": message}])


def product_not_found(missing: Sequence[int]) -> ShopError:
    return ShopError("NOT_FOUND", f"Product {missing[0]} does not exist.", product_ids=list(missing))


def session_not_found(session_id: str) -> ShopError:
    """A session that does not exist, is another retailer's, or is sealed against the caller."""
    return ShopError("NOT_FOUND", f"Checkout session {session_id} does not exist.", session_id=session_id)


def out_of_stock(shortages: Sequence[Shortage]) -> ShopError:
    """409 OUT_OF_STOCK naming every short product; the first one's figures also at the top level."""
    first = shortages[0]
    named = "; ".join(f"product {s.product_id}: {s.requested} requested, {s.available} available" for s in shortages)
    return ShopError(
        "OUT_OF_STOCK",
        f"Not enough stock ({named}).",
        product_id=first.product_id,
        requested=first.requested,
        available=first.available,
        products=[{"product_id": s.product_id, "requested": s.requested, "available": s.available} for s in shortages],
    )


def session_completed(session_id: str, order_id: int | None) -> ShopError:
    return ShopError(
        "SESSION_COMPLETED",
        f"Checkout session {session_id} is completed: order {order_id} was placed from it.",
        session_id=session_id,
        order_id=order_id,
    )


def session_expired(session_id: str, expired_at: datetime) -> ShopError:
    return ShopError(
        "SESSION_EXPIRED",
        f"Checkout session {session_id} expired at {format_timestamp(expired_at)}; sync the cart to start it again.",
        session_id=session_id,
        expired_at=format_timestamp(expired_at),
    )


def too_many_holds(shopper: str, limit: int, now: datetime, first_ends: datetime) -> ShopError:
    """429: the shopper (an address, or a customer_id) already has ``limit`` sessions holding a
    coupon or stock; Retry-After: until the first of them ends."""
    wait = max(1, math.ceil((first_ends - now).total_seconds()))
    return ShopError(
        "RATE_LIMITED",
        f"This shopper already holds coupons or stock in {limit} checkout sessions; complete or abandon one"
        " (a hold ends when its session expires) before holding more.",
        limit=limit,
        shopper=shopper,
        retry_after=wait,
    )


def busy() -> ShopError:
    return ShopError(
        "SERVICE_UNAVAILABLE", "The session is being changed by other requests; retry shortly.", retry_after=1
    )
