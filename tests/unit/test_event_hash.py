"""The writer's hash of an event equals the definition: sha256 of the previous hash and the
canonical JSON of the event as the events endpoint serves it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.application import CouponLedger
from ledger.domain import FIXED, PERCENTAGE
from ledger.served_events import EVENT_ENVELOPE, ZERO_HASH, event_hash, hash_of_event, served_event
from tests.support.commands import apply, archive, create_campaign, create_coupon, deactivate, release, reserve, reverse
from tests.support.ledger import RETAILER, D


class FakeEvent:
    """An event of any shape: the envelope the library gives every event, and data."""

    def __init__(self, version: int, timestamp: datetime, data: dict[str, Any]) -> None:
        self.originator_id = uuid4()
        self.originator_version = version
        self.timestamp = timestamp
        self.originator_topic = "tests:FakeEvent"
        self.__dict__.update(data)


def every_stored_event(ledger: CouponLedger) -> list[Any]:
    notifications = ledger.recorder.select_notifications(start=1, limit=10_000)
    return [ledger.mapper.to_domain_event(n) for n in notifications]


def test_every_event_of_a_history_hashes_as_served(ledger: CouponLedger) -> None:
    create_coupon(ledger, RETAILER, "HASH-ME", PERCENTAGE, D("12.5"), max_uses=3, max_discount_amount=D("20"))
    create_coupon(ledger, RETAILER, "FIXED-UBER", FIXED, D("5.00"), min_order_value=D("10"))
    redemption = apply(ledger, RETAILER, "HASH-ME", D("99.99"), customer_id="kunde-ä")
    reverse(ledger, RETAILER, redemption.redemption_id, reason='line "two"\nback')
    deactivate(ledger, RETAILER, "FIXED-UBER")
    archive(ledger, RETAILER, "FIXED-UBER")
    create_campaign(
        ledger, RETAILER, "Été", "ETE", 3, {"discount_type": FIXED, "discount_value": D("2")}, max_redemptions=2
    )
    hold = reserve(ledger, RETAILER, "HASH-ME", D("40"), customer_id="c-1")
    release(ledger, RETAILER, hold.reservation_id)
    events = every_stored_event(ledger)
    assert len({type(e).__qualname__ for e in events}) >= 6
    prev = ZERO_HASH
    for event in events:
        assert hash_of_event(prev, event) == event_hash(prev, served_event(event))
        prev = event_hash(prev, served_event(event))


texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
amounts = st.one_of(
    *(st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=places) for places in (0, 1, 2, 3, 6))
)
moments = st.datetimes(
    min_value=datetime(1, 1, 3),
    max_value=datetime(9999, 12, 29),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=45)), timezone(timedelta(hours=-3))]),
)
leaves = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | texts | amounts | moments | st.uuids()
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(texts, inner, max_size=3)
        | st.dictionaries(st.integers(0, 9), inner, max_size=2)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    version=st.integers(1, 2**40),
    timestamp=moments,
    data=st.dictionaries(texts.filter(lambda k: k not in EVENT_ENVELOPE), values, max_size=5),
    prev=st.sampled_from([ZERO_HASH, "ab" * 32]),
)
def test_any_event_data_hashes_as_served(version: int, timestamp: datetime, data: dict[str, Any], prev: str) -> None:
    event = FakeEvent(version, timestamp, data)
    assert hash_of_event(prev, event) == event_hash(prev, served_event(event))


def test_a_value_with_no_served_form_is_refused_by_both() -> None:
    event = FakeEvent(1, datetime(2026, 1, 1, tzinfo=UTC), {"odd": {1.5}})
    for hashing in (lambda: hash_of_event(ZERO_HASH, event), lambda: event_hash(ZERO_HASH, served_event(event))):
        try:
            hashing()
        except TypeError:
            continue
        raise AssertionError("a set has no served form and must not be hashed")


def test_a_uuid_is_served_and_hashed_as_its_string() -> None:
    stream = UUID("12345678-1234-5678-1234-567812345678")
    event = FakeEvent(2, datetime(2026, 1, 1, tzinfo=UTC), {"coupon_id": stream})
    assert served_event(event)["data"] == {"coupon_id": str(stream)}
    assert hash_of_event(ZERO_HASH, event) == event_hash(ZERO_HASH, served_event(event))


def test_events_that_share_one_timestamp_hash_as_served_in_any_order() -> None:
    # A batch's events share one datetime object, formatted once for all of them.
    first = datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC)
    second = datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=2)))
    events = [FakeEvent(v, moment, {"at": moment}) for v, moment in enumerate([first, first, second, first], 1)]
    for event in events + events[::-1]:
        assert hash_of_event(ZERO_HASH, event) == event_hash(ZERO_HASH, served_event(event))


def test_amounts_of_every_exponent_hash_as_served() -> None:
    amounts = ["12.50", "-0.00", "0E-2", "1E-2", "100", "10.5", "0.001", "1E+2", "1.23E+5", "12.3E-7", "NaN", "-7.25"]
    for text in amounts:
        event = FakeEvent(1, datetime(2026, 1, 1, tzinfo=UTC), {"amount": Decimal(text), "nested": [Decimal(text)]})
        assert hash_of_event(ZERO_HASH, event) == event_hash(ZERO_HASH, served_event(event)), text
