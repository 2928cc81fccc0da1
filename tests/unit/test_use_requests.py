"""What a request for a use of a coupon shares between listing what it needs and deciding it: made
once per command, and only for what it was asked with."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

from ledger.application import CouponLedger
from ledger.commands import Redeem, Reserve
from ledger.domain import Order, coupon_id_for, redemption_id_for
from ledger.handlers import needs
from ledger.uses import UseRequest
from tests.support.commands import create_coupon
from tests.support.ledger import RETAILER, D


def redeem_command(**more: str) -> Redeem:
    return Redeem(retailer_id=RETAILER, code="save10", order=Order(Decimal("100.00")), **more)


def test_listing_what_a_redemption_needs_makes_the_use_request_the_writer_then_reuses() -> None:
    command = redeem_command(idempotency_key="key-1")
    listed = needs(command)
    use = UseRequest.of(command)
    assert UseRequest.of(command) is use
    assert listed == (coupon_id_for(RETAILER, "SAVE10"), redemption_id_for(RETAILER, "key-1"))
    assert use.keyed_id == redemption_id_for(RETAILER, "key-1")


def test_a_use_request_is_made_per_command_and_does_not_change_what_the_command_equals() -> None:
    first, second = redeem_command(idempotency_key="a"), redeem_command(idempotency_key="b")
    assert UseRequest.of(first).keyed_id != UseRequest.of(second).keyed_id
    assert first == redeem_command(idempotency_key="a")  # the kept request is not a field
    assert hash(first) == hash(redeem_command(idempotency_key="a"))


def test_a_use_request_asked_with_something_else_is_made_again() -> None:
    hold = Reserve(retailer_id=RETAILER, code="SAVE10", order=Order(Decimal("100.00")), ttl_seconds=60)
    plain = UseRequest.of(hold)
    with_ttl = UseRequest.of(hold, ttl_seconds=60)
    assert "ttl_seconds" not in plain.request
    assert with_ttl.request["ttl_seconds"] == 60
    assert with_ttl.fingerprint != plain.fingerprint
    assert UseRequest.of(hold, ttl_seconds=60) is with_ttl


def test_a_redemption_decided_from_the_kept_request_records_the_request_sent() -> None:
    ledger = CouponLedger()
    create_coupon(ledger, RETAILER, "SAVE10", "percentage", D("10"))
    command = redeem_command(idempotency_key=str(uuid4()), order_id="1001")
    receipt = ledger.execute(command)
    again = ledger.execute(command)
    assert again.replayed and again.redemption_id == receipt.redemption_id
    assert ledger.execute(redeem_command(idempotency_key=command.idempotency_key or "", order_id="1001")).replayed
