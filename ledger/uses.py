"""What a redemption and a hold share about a request for a use of a coupon: the request's
fingerprint (a repeated idempotency key replays only the same request), the ids of the aggregates
it involves, and the fields both record."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from ledger.batch import Batch
from ledger.commands import Redeem, Reserve
from ledger.domain import (
    Campaign,
    Coupon,
    CustomerUsage,
    Order,
    Quote,
    ascii_upper,
    coupon_id_for,
    customer_usage_id_for,
    normalize_code,
    redemption_id_for,
)
from ledger.errors import CouponNotFound, IdempotencyKeyReused, InvalidCoupon

# A redemption's request, as the fingerprint hashes it: keys sorted (one encoder, not one a call).
FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True)

# Checkout's redemptions are keyed by their order, in a namespace of their own: no client's
# Idempotency-Key can name (and so replay, or block) an order's redemption.
ORDER_REDEMPTIONS = uuid5(NAMESPACE_URL, "https://coupon-ledger/order-redemptions")


def order_redemption_id_for(retailer_id: UUID, order_key: str) -> UUID:
    return uuid5(ORDER_REDEMPTIONS, f"{retailer_id}/{order_key}")


def fingerprint(request: dict[str, Any]) -> str:
    return hashlib.sha256(FINGERPRINT_JSON.encode(request).encode()).hexdigest()


def check_replay(recorded: str, request: str, idempotency_key: str | None) -> None:
    """A repeated key replays only the same request; another one is IDEMPOTENCY_KEY_REUSED."""
    if recorded != request:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request.", idempotency_key=idempotency_key
        )


_MADE = "_use_request"  # the attribute a command keeps its UseRequest in (with what else it was asked)


@dataclass(frozen=True)
class UseRequest:
    """What a redemption and a hold share about a request for a use of a coupon: the order, the
    request's fingerprint (for idempotency keys), and the ids of the aggregates it involves
    (``coupon_id`` None for a code that cannot exist: COUPON_NOT_FOUND once the key is checked)."""

    retailer_id: UUID
    code: str
    normalized: str
    order: Order
    order_id: str | None
    customer_id: str | None
    request: dict[str, Any]  # what the fingerprint hashes
    coupon_id: UUID | None
    usage_id: UUID | None
    keyed_id: UUID | None

    @classmethod
    def of(cls, command: Redeem | Reserve, **more: Any) -> UseRequest:
        """``more``: what else the request's fingerprint holds (a hold's ttl_seconds).

        Made once per command: the caller's thread makes it to list what the command needs, and
        the writer reuses it to decide (and to decide again after a conflict). It depends on
        nothing but the command, which is a frozen value."""
        key = tuple(more.items())
        kept: tuple[tuple[Any, ...], UseRequest] | None = command.__dict__.get(_MADE)
        if kept is not None and kept[0] == key:
            return kept[1]
        made = cls._of(command, **more)
        object.__setattr__(command, _MADE, (key, made))  # beside the fields: not compared, not hashed
        return made

    @classmethod
    def _of(cls, command: Redeem | Reserve, **more: Any) -> UseRequest:
        normalized = ascii_upper(command.code)
        request = {"code": normalized, **command.order.fingerprint(), "order_id": command.order_id, **more}
        if command.customer_id is not None:
            request["customer_id"] = command.customer_id
        try:
            coupon_id: UUID | None = coupon_id_for(command.retailer_id, normalize_code(command.code))
        except InvalidCoupon:
            coupon_id = None
        customer_id = command.customer_id
        usage_id = customer_usage_id_for(coupon_id, customer_id) if coupon_id and customer_id else None
        keyed_id: UUID | None = None
        if isinstance(command, Redeem):
            if command.order_key is not None:
                keyed_id = order_redemption_id_for(command.retailer_id, command.order_key)
            elif command.idempotency_key:
                keyed_id = redemption_id_for(command.retailer_id, command.idempotency_key)
        return cls(
            command.retailer_id,
            command.code,
            normalized,
            command.order,
            command.order_id,
            customer_id,
            request,
            coupon_id,
            usage_id,
            keyed_id,
        )

    @cached_property
    def fingerprint(self) -> str:
        """Hashed only when asked for (a replay's check, a new use's record), not to list what a
        command needs."""
        return fingerprint(self.request)

    @property
    def needs(self) -> tuple[UUID, ...]:
        return tuple(i for i in (self.coupon_id, self.usage_id) if i is not None)

    def parties(self, batch: Batch) -> tuple[Coupon, CustomerUsage | None, Campaign | None]:
        """The coupon (COUPON_NOT_FOUND if missing or archived), the customer's usage of it (started
        in this batch on a first use) and its campaign."""
        if self.coupon_id is None:
            raise CouponNotFound(f"Coupon {self.normalized} does not exist.", code=self.code)
        coupon: Coupon | None = batch.get(self.coupon_id)
        if coupon is None or coupon.archived:
            raise CouponNotFound(f"Coupon {self.normalized} does not exist.", code=self.normalized)
        usage: CustomerUsage | None = None
        if self.usage_id is not None and self.customer_id is not None:
            usage = batch.get(self.usage_id)
            if usage is None:
                usage = CustomerUsage(coupon_id=self.coupon_id, customer_id=self.customer_id)
                batch.add(usage)
        campaign: Campaign | None = batch.get(coupon.campaign_id) if coupon.campaign_id is not None else None
        return coupon, usage, campaign

    def recorded(self, coupon: Coupon, quote: Quote, idempotency_key: str | None) -> dict[str, Any]:
        """The fields a Redemption or a Reservation records of this use."""
        return use_of(
            self.retailer_id, coupon, quote, idempotency_key, self.fingerprint, self.order_id, self.customer_id
        )


def use_of(
    retailer_id: UUID,
    coupon: Coupon,
    quote: Quote,
    idempotency_key: str | None,
    request_fingerprint: str,
    order_id: str | None,
    customer_id: str | None,
) -> dict[str, Any]:
    """What a Redemption and a Reservation both record of a use of ``coupon`` priced at ``quote``."""
    return {
        "retailer_id": retailer_id,
        "coupon_id": coupon.id,
        "code": coupon.code,
        "idempotency_key": idempotency_key,
        "request_fingerprint": request_fingerprint,
        "original_subtotal": quote.original_subtotal,
        "discount_amount": quote.discount_amount,
        "final_total": quote.final_total,
        "free_shipping": quote.free_shipping,
        "order_id": order_id,
        "customer_id": customer_id,
        "campaign_id": coupon.campaign_id,
    }
