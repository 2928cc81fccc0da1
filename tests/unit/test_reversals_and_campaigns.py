"""On the in-memory store: reversing a redemption, and campaigns (generated codes, shared
budgets)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest

import ledger.campaigns as campaigns_module
import ledger.domain.values as domain_module
from ledger.application import CouponLedger
from ledger.campaigns import MAX_CAMPAIGN_CODES
from ledger.domain import COUNT_EXPIRED, FIXED, GENERATED_ALPHABET, PERCENTAGE, Campaign, coupon_id_for
from tests.support.commands import apply, archive, create_campaign, create_coupon, deactivate, reverse
from tests.support.ledger import (
    HOUR,
    OTHER_RETAILER,
    RETAILER,
    START,
    D,
    ManualClock,
    campaign_codes,
    campaign_of,
    code_of,
    coupon,
    customer_uses,
    data_of,
    error_from,
    event_types,
    served,
    status,
)

TEMPLATE: dict[str, Any] = {"discount_type": FIXED, "discount_value": D("10.00")}


# --- reversal ----------------------------------------------------------------------------------------


class TestReversal:
    def test_a_reversal_gives_the_use_back_and_is_recorded_on_the_coupon_and_the_redemption(
        self, ledger: CouponLedger, clock: ManualClock
    ) -> None:
        create_coupon(ledger, RETAILER, "ONCE", PERCENTAGE, D("10"), max_uses=1)
        receipt = apply(ledger, RETAILER, "ONCE", D("80.00"), order_id="o-1")
        assert status(ledger, "ONCE", clock) == COUNT_EXPIRED
        clock.advance(HOUR)
        reversal = reverse(ledger, RETAILER, receipt.redemption_id, "order cancelled")
        assert reversal.already_reversed is False
        redemption = reversal.redemption
        assert (redemption.id, redemption.is_reversed, redemption.reversed_at, redemption.reversal_reason) == (
            receipt.redemption_id,
            True,
            START + HOUR,
            "order cancelled",
        )
        once = coupon(ledger, "ONCE")
        assert (once.uses_count, once.status(clock())) == (0, "active")
        events = ledger.coupon_events(RETAILER, "ONCE")
        assert [e.type for e in events] == ["Coupon.Created", "Coupon.Redeemed", "Coupon.RedemptionReversed"]
        assert data_of(events[-1]) == served(
            {
                "redemption_id": receipt.redemption_id,
                "discount_amount": D("8.00"),
                "reason": "order cancelled",
            }
        )
        stored = ledger.get_redemption(RETAILER, receipt.redemption_id)
        assert (stored.is_reversed, stored.reversal_reason, stored.version) == (True, "order cancelled", 2)
        apply(ledger, RETAILER, "ONCE", D("80.00"))  # the use given back can be used again

    def test_reversing_again_changes_nothing_and_says_so(self, ledger: CouponLedger, clock: ManualClock) -> None:
        create_coupon(ledger, RETAILER, "TWICE", FIXED, D("5.00"), max_uses=2, max_uses_per_customer=2)
        receipt = apply(ledger, RETAILER, "TWICE", D("20.00"), customer_id="alice")
        apply(ledger, RETAILER, "TWICE", D("20.00"), customer_id="alice")
        reverse(ledger, RETAILER, receipt.redemption_id, "first")
        clock.advance(HOUR)
        again = reverse(ledger, RETAILER, receipt.redemption_id, "second")
        assert again.already_reversed is True
        assert (again.redemption.reversal_reason, again.redemption.reversed_at) == ("first", START)
        assert coupon(ledger, "TWICE").uses_count == 1
        assert customer_uses(ledger, "TWICE", "alice") == 1
        assert event_types(ledger, "TWICE").count("Coupon.RedemptionReversed") == 1
        assert ledger.get_redemption(RETAILER, receipt.redemption_id).version == 2

    def test_a_reversal_without_a_reason(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "PLAIN", FIXED, D("5.00"))
        receipt = apply(ledger, RETAILER, "PLAIN", D("20.00"))
        assert reverse(ledger, RETAILER, receipt.redemption_id).redemption.reversal_reason is None
        assert ledger.coupon_events(RETAILER, "PLAIN")[-1].data["reason"] is None

    def test_another_retailers_redemption_is_not_found_and_left_alone(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "MINE", FIXED, D("5.00"))
        receipt = apply(ledger, RETAILER, "MINE", D("20.00"))
        error = error_from(lambda: reverse(ledger, OTHER_RETAILER, receipt.redemption_id))
        assert (error.code, error.details) == ("REDEMPTION_NOT_FOUND", {"redemption_id": str(receipt.redemption_id)})
        assert code_of(lambda: ledger.get_redemption(OTHER_RETAILER, receipt.redemption_id)) == "REDEMPTION_NOT_FOUND"
        assert coupon(ledger, "MINE").uses_count == 1
        assert ledger.get_redemption(RETAILER, receipt.redemption_id).is_reversed is False

    def test_an_id_that_is_no_redemption_is_not_found(self, ledger: CouponLedger) -> None:
        mine = create_coupon(ledger, RETAILER, "MINE", FIXED, D("5.00"))
        for unknown in (uuid4(), mine.id, coupon_id_for(RETAILER, "NOSUCH")):
            assert code_of(partial(reverse, ledger, RETAILER, unknown)) == "REDEMPTION_NOT_FOUND"
        assert coupon(ledger, "MINE").version == 1

    def test_reversals_bring_uses_count_back_one_each(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "MANY", FIXED, D("5.00"), max_uses=3)
        receipts = [apply(ledger, RETAILER, "MANY", D("20.00")) for _ in range(3)]
        assert code_of(lambda: apply(ledger, RETAILER, "MANY", D("20.00"))) == "USAGE_LIMIT_REACHED"
        for left, receipt in zip((2, 1, 0), receipts, strict=True):
            reverse(ledger, RETAILER, receipt.redemption_id)
            assert coupon(ledger, "MANY").uses_count == left
        for _ in range(3):
            apply(ledger, RETAILER, "MANY", D("20.00"))
        assert code_of(lambda: apply(ledger, RETAILER, "MANY", D("20.00"))) == "USAGE_LIMIT_REACHED"

    def test_a_reversal_works_whatever_the_coupons_status_now(self, ledger: CouponLedger, clock: ManualClock) -> None:
        create_coupon(ledger, RETAILER, "OVER", FIXED, D("5.00"), expires_at=START + HOUR)
        receipt = apply(ledger, RETAILER, "OVER", D("20.00"))
        deactivate(ledger, RETAILER, "OVER")
        clock.set(START + 2 * HOUR)
        assert reverse(ledger, RETAILER, receipt.redemption_id).already_reversed is False
        assert coupon(ledger, "OVER").uses_count == 0


# --- campaigns ---------------------------------------------------------------------------------------

CODE_PATTERN = re.compile(f"^SPRING[{GENERATED_ALPHABET}]{{6}}$")


def scripted_draws(monkeypatch: pytest.MonkeyPatch, blocks: list[str]) -> None:
    """Make the code generator draw these 6-character blocks in turn (then fall back to A, B, C...)."""

    def characters() -> Iterator[str]:
        for block in blocks:
            yield from block
        n = 0
        while True:
            yield from f"Z{n:05d}".translate(str.maketrans("0123456789", "ABCDEFGHJK"))
            n += 1

    stream = characters()
    monkeypatch.setattr(domain_module, "secrets", SimpleNamespace(choice=lambda alphabet: next(stream)))


class TestCampaigns:
    def test_codes_are_the_prefix_and_six_characters_without_look_alikes_all_distinct(
        self, ledger: CouponLedger
    ) -> None:
        campaign = create_campaign(ledger, RETAILER, "Spring sale", " spring ", 300, TEMPLATE)
        codes = campaign_codes(ledger, campaign.id)
        assert len(codes) == len(set(codes)) == 300
        assert all(CODE_PATTERN.match(code) for code in codes), [c for c in codes if not CODE_PATTERN.match(c)]
        assert not set("".join(code[6:] for code in codes)) & set("0O1IL")
        assert set(GENERATED_ALPHABET).isdisjoint("0O1IL") and len(GENERATED_ALPHABET) == 31
        assert (campaign.prefix, campaign.count, campaign.generated, campaign.name) == (
            "SPRING",
            300,
            300,
            "Spring sale",
        )

    def test_every_code_is_a_coupon_with_the_template_and_the_campaign_id(self, ledger: CouponLedger) -> None:
        template = {**TEMPLATE, "max_uses": 1, "min_order_value": D("15.00"), "is_active": False, "public": True}
        campaign = create_campaign(ledger, RETAILER, "Drafts", "DRAFT", 3, template)
        for code in campaign_codes(ledger, campaign.id):
            made = coupon(ledger, code)
            assert (made.campaign_id, made.max_uses, made.min_order_value, made.is_active, made.public) == (
                campaign.id,
                1,
                D("15.00"),
                False,
                True,
            )
            assert (made.discount_type, made.discount_value, made.uses_count) == (FIXED, D("10.00"), 0)

    def test_the_count_is_honoured_across_chunks_one_save_each(
        self, ledger: CouponLedger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(campaigns_module, "CAMPAIGN_CHUNK", 4)
        progress: list[int] = []
        campaign = create_campaign(ledger, RETAILER, "Chunked", "CH", 10, TEMPLATE, progress=progress.append)
        assert progress == [4, 4, 2]
        assert campaign.generated == 10
        assert len(set(campaign_codes(ledger, campaign.id))) == 10
        generated = [e.count for e in ledger.events.get(campaign.id) if isinstance(e, Campaign.CodesGenerated)]
        assert generated == [4, 4, 2]

    def test_a_campaign_larger_than_one_chunk_at_the_real_chunk_size(self, ledger: CouponLedger) -> None:
        count = campaigns_module.CAMPAIGN_CHUNK * 2 + 1
        progress: list[int] = []
        campaign = create_campaign(ledger, RETAILER, "Big", "BIG", count, TEMPLATE, progress=progress.append)
        assert progress == [campaigns_module.CAMPAIGN_CHUNK] * 2 + [1]
        assert len(set(campaign_codes(ledger, campaign.id))) == count == campaign.generated

    def test_a_drawn_code_that_already_exists_is_drawn_again(
        self, ledger: CouponLedger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        standalone = create_coupon(ledger, RETAILER, "PREAAAAAA", PERCENTAGE, D("50"))
        create_coupon(ledger, OTHER_RETAILER, "PREBBBBBB", PERCENTAGE, D("50"))  # another retailer: no clash
        # Draws: AAAAAA (taken), AAAAAA (drawn already in this campaign), BBBBBB, then CCCCCC for the
        # first code once the store says AAAAAA is taken.
        scripted_draws(monkeypatch, ["AAAAAA", "AAAAAA", "BBBBBB", "CCCCCC"])
        campaign = create_campaign(ledger, RETAILER, "Clash", "pre", 2, TEMPLATE)
        assert sorted(campaign_codes(ledger, campaign.id)) == ["PREBBBBBB", "PRECCCCCC"]
        assert campaign.generated == 2
        kept = coupon(ledger, "PREAAAAAA")
        assert (kept.id, kept.version, kept.campaign_id, kept.discount_type) == (standalone.id, 1, None, PERCENTAGE)
        assert coupon(ledger, "PREBBBBBB").campaign_id == campaign.id

    def test_codes_of_an_earlier_campaign_are_never_drawn_again(
        self, ledger: CouponLedger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        scripted_draws(monkeypatch, ["AAAAAA", "BBBBBB"])
        first = create_campaign(ledger, RETAILER, "One", "X", 2, TEMPLATE)
        scripted_draws(monkeypatch, ["BBBBBB", "AAAAAA", "BBBBBB", "CCCCCC", "DDDDDD"])
        second = create_campaign(ledger, RETAILER, "Two", "X", 2, TEMPLATE)
        assert sorted(campaign_codes(ledger, first.id)) == ["XAAAAAA", "XBBBBBB"]
        assert sorted(campaign_codes(ledger, second.id)) == ["XCCCCCC", "XDDDDDD"]

    @pytest.mark.parametrize(
        ("arguments", "field"),
        [
            ({"count": 0}, "count"),
            ({"count": MAX_CAMPAIGN_CODES + 1}, "count"),
            ({"max_redemptions": 0}, "max_redemptions"),
            ({"max_discount_total": D("0.00")}, "max_discount_total"),
            ({"prefix": "BAD PREFIX"}, "prefix"),
            ({"prefix": "P" * 45}, "prefix"),
            ({"template": {"discount_type": PERCENTAGE, "discount_value": D("101")}}, "discount_value"),
            ({"template": {**TEMPLATE, "max_discount_amount": D("5")}}, "max_discount_amount"),
        ],
        ids=["no-codes", "too-many", "zero-redemptions", "zero-discount-total", "prefix-space", "prefix-too-long",
             "template-value", "template-cap-on-fixed"],
    )  # fmt: skip
    def test_invalid_campaigns_are_refused_and_create_nothing(
        self, ledger: CouponLedger, arguments: dict[str, Any], field: str
    ) -> None:
        request: dict[str, Any] = {"name": "Bad", "prefix": "BAD", "count": 2, "template": TEMPLATE, **arguments}
        error = error_from(lambda: create_campaign(ledger, RETAILER, **request))
        assert error.code == "VALIDATION_FAILED"
        assert [e["field"] for e in error.details["errors"]] == [field]
        assert ledger.recorder.max_notification_id() in (0, None)

    def test_a_prefix_of_up_to_44_characters_leaves_room_for_the_random_part(self, ledger: CouponLedger) -> None:
        campaign = create_campaign(ledger, RETAILER, "Long", "P" * 44, 1, TEMPLATE)
        assert [len(code) for code in campaign_codes(ledger, campaign.id)] == [50]
        empty = create_campaign(ledger, RETAILER, "Bare", "", 1, TEMPLATE)
        assert [len(code) for code in campaign_codes(ledger, empty.id)] == [6]

    def test_another_retailers_campaign_is_not_found(self, ledger: CouponLedger) -> None:
        campaign = create_campaign(ledger, RETAILER, "Mine", "MINE", 1, TEMPLATE)
        error = error_from(lambda: ledger.get_campaign(OTHER_RETAILER, campaign.id))
        assert (error.code, error.details) == ("CAMPAIGN_NOT_FOUND", {"campaign_id": str(campaign.id)})
        assert code_of(lambda: ledger.get_campaign(RETAILER, uuid4())) == "CAMPAIGN_NOT_FOUND"
        code = campaign_codes(ledger, campaign.id)[0]
        assert code_of(lambda: ledger.get_campaign(RETAILER, coupon(ledger, code).id)) == "CAMPAIGN_NOT_FOUND"

    def test_max_redemptions_holds_across_the_campaigns_codes_and_a_reversal_gives_one_back(
        self, ledger: CouponLedger
    ) -> None:
        campaign = create_campaign(ledger, RETAILER, "Three", "THREE", 5, TEMPLATE, max_redemptions=3)
        codes = campaign_codes(ledger, campaign.id)
        receipts = [apply(ledger, RETAILER, code, D("50.00")) for code in codes[:3]]
        error = error_from(lambda: apply(ledger, RETAILER, codes[3], D("50.00")))
        assert error.code == "CAMPAIGN_BUDGET_EXHAUSTED"
        assert error.details == {"campaign_id": str(campaign.id), "max_redemptions": 3, "redemptions": 3}
        assert code_of(lambda: ledger.validate(RETAILER, codes[0], D("50.00"))) == "CAMPAIGN_BUDGET_EXHAUSTED"
        assert (campaign_of(ledger, campaign.id).redemptions, coupon(ledger, codes[3]).uses_count) == (3, 0)
        reverse(ledger, RETAILER, receipts[1].redemption_id)
        assert campaign_of(ledger, campaign.id).redemptions == 2
        apply(ledger, RETAILER, codes[4], D("50.00"))
        assert code_of(lambda: apply(ledger, RETAILER, codes[1], D("50.00"))) == "CAMPAIGN_BUDGET_EXHAUSTED"
        redemption = ledger.get_redemption(RETAILER, receipts[0].redemption_id)
        assert redemption.campaign_id == campaign.id

    def test_max_discount_total_is_never_exceeded_and_a_reversal_gives_the_amount_back(
        self, ledger: CouponLedger
    ) -> None:
        template = {"discount_type": PERCENTAGE, "discount_value": D("10")}
        campaign = create_campaign(ledger, RETAILER, "Budget", "BUDGET", 3, template, max_discount_total=D("25.00"))
        first, second, third = campaign_codes(ledger, campaign.id)
        apply(ledger, RETAILER, first, D("120.00"))  # 12.00
        kept = apply(ledger, RETAILER, second, D("100.00"))  # 10.00, 3.00 left
        error = error_from(lambda: apply(ledger, RETAILER, third, D("30.10")))  # 3.01 would pass it by a cent
        assert error.code == "CAMPAIGN_BUDGET_EXHAUSTED"
        assert error.details == {
            "campaign_id": str(campaign.id),
            "max_discount_total": "25.00",
            "discount_total": "22.00",
            "remaining": "3.00",
            "discount_amount": "3.01",
        }
        apply(ledger, RETAILER, third, D("30.00"))  # exactly the rest
        assert campaign_of(ledger, campaign.id).discount_total == D("25.00")
        spent = error_from(lambda: ledger.validate(RETAILER, first, D("0.10")))
        assert spent.details == {
            "campaign_id": str(campaign.id),
            "max_discount_total": "25.00",
            "discount_total": "25.00",
            "remaining": "0.00",
        }
        reverse(ledger, RETAILER, kept.redemption_id)
        assert campaign_of(ledger, campaign.id).discount_total == D("15.00")
        assert apply(ledger, RETAILER, second, D("100.00")).quote.discount_amount == D("10.00")
        assert code_of(lambda: apply(ledger, RETAILER, second, D("0.10"))) == "CAMPAIGN_BUDGET_EXHAUSTED"

    def test_a_campaign_with_both_limits_stops_at_whichever_comes_first(self, ledger: CouponLedger) -> None:
        campaign = create_campaign(
            ledger, RETAILER, "Both", "BOTH", 4, TEMPLATE, max_redemptions=3, max_discount_total=D("100.00")
        )
        codes = campaign_codes(ledger, campaign.id)
        for code in codes[:3]:
            apply(ledger, RETAILER, code, D("50.00"))
        assert error_from(lambda: apply(ledger, RETAILER, codes[3], D("50.00"))).details["max_redemptions"] == 3

    def test_campaign_coupons_keep_their_own_limits(self, ledger: CouponLedger) -> None:
        campaign = create_campaign(ledger, RETAILER, "Single", "ONE", 2, {**TEMPLATE, "max_uses": 1})
        first, second = campaign_codes(ledger, campaign.id)
        apply(ledger, RETAILER, first, D("50.00"))
        assert code_of(lambda: apply(ledger, RETAILER, first, D("50.00"))) == "USAGE_LIMIT_REACHED"
        apply(ledger, RETAILER, second, D("50.00"))
        assert campaign_of(ledger, campaign.id).redemptions == 2

    def test_archiving_one_campaign_coupon_leaves_the_others(self, ledger: CouponLedger) -> None:
        campaign = create_campaign(ledger, RETAILER, "Arch", "ARCH", 2, TEMPLATE)
        first, second = campaign_codes(ledger, campaign.id)
        archive(ledger, RETAILER, first)
        assert code_of(lambda: apply(ledger, RETAILER, first, D("50.00"))) == "COUPON_NOT_FOUND"
        apply(ledger, RETAILER, second, D("50.00"))
        assert campaign_of(ledger, campaign.id).redemptions == 1
