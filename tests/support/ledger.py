"""A CouponLedger under test: the clock the test moves by hand, the retailers, and shorthands that
read the ledger back (events, status, uses, campaign codes) or price an order through it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from ledger.application import CouponLedger, RecordedEvent
from ledger.commands import Receipt
from ledger.domain import Campaign, Coupon, CustomerUsage, Item, Quote, customer_usage_id_for
from ledger.errors import LedgerError
from ledger.served_events import jsonable
from tests.support.commands import call

START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
RETAILER = UUID("00000000-0000-4000-8000-00000000000a")
OTHER_RETAILER = UUID("00000000-0000-4000-8000-00000000000b")
D = Decimal
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


class ManualClock:
    """A clock the test moves by hand: CouponLedger(clock=ManualClock())."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta

    def set(self, when: datetime) -> None:
        self.now = when


def error_from(call: Callable[[], object]) -> LedgerError:
    """Run ``call``, which must raise a domain error, and return that error."""
    with pytest.raises(LedgerError) as info:
        call()
    return info.value


def code_of(call: Callable[[], object]) -> str:
    return error_from(call).code


def data_of(event: RecordedEvent) -> dict[str, Any]:
    """An event's data as served, without who acted (``actor``)."""
    return {k: v for k, v in event.data.items() if k != "actor"}


def served(value: Any) -> Any:
    """Values as an event serves them (amounts "8.00", timestamps with Z, ids as strings)."""
    return jsonable(value)


def event_types(ledger: CouponLedger, code: str, retailer: UUID = RETAILER) -> list[str]:
    return [e.type for e in ledger.coupon_events(retailer, code)]


def coupon(ledger: CouponLedger, code: str, retailer: UUID = RETAILER) -> Coupon:
    return ledger.get_coupon(retailer, code)


def status(ledger: CouponLedger, code: str, clock: ManualClock, retailer: UUID = RETAILER) -> str:
    return ledger.get_coupon(retailer, code).status(clock())


def customer_uses(ledger: CouponLedger, code: str, customer_id: str, retailer: UUID = RETAILER) -> int:
    """The live uses the customer's CustomerUsage aggregate holds (0 if it has none)."""
    coupon_id = ledger.get_coupon(retailer, code, archived=True).id
    usage = ledger._get(customer_usage_id_for(coupon_id, customer_id), CustomerUsage)
    return usage.uses if usage is not None else 0


def campaign_of(ledger: CouponLedger, campaign_id: UUID, retailer: UUID = RETAILER) -> Campaign:
    return ledger.get_campaign(retailer, campaign_id)


def item(
    product_id: str,
    unit_price: str,
    quantity: int = 1,
    variant_id: str | None = None,
    category_id: str | None = None,
) -> Item:
    return Item(
        product_id=product_id,
        quantity=quantity,
        unit_price=D(unit_price),
        variant_id=variant_id,
        category_id=category_id,
    )


def price(ledger: CouponLedger, operation: str, code: str, subtotal: str | None = None, **kwargs: Any) -> Quote:
    """Validate or apply ``code``; the quote either way."""
    amount = D(subtotal) if subtotal is not None else None
    result = call(ledger, operation, RETAILER, code, amount, **kwargs)
    return result.quote if isinstance(result, Receipt) else result


def stored_event_names(ledger: CouponLedger) -> list[str]:
    """The qualified class name of every event in the store, in notification order."""
    names: list[str] = []
    start = 1
    while True:
        page = ledger.recorder.select_notifications(start, 1000)
        if not page:
            return names
        names.extend(type(ledger.mapper.to_domain_event(n)).__qualname__ for n in page)
        start = page[-1].id + 1


def campaign_codes(ledger: CouponLedger, campaign_id: UUID) -> list[str]:
    """The codes of a campaign's coupons, read from the store's Coupon.Created events."""
    codes: list[str] = []
    start = 1
    while True:
        page = ledger.recorder.select_notifications(start, 1000)
        if not page:
            return codes
        for notification in page:
            event = ledger.mapper.to_domain_event(notification)
            if isinstance(event, Coupon.Created) and event.campaign_id == campaign_id:
                codes.append(event.code)
        start = page[-1].id + 1
