"""Limits under concurrency on PostgreSQL: the per-customer limit, a campaign's
max_redemptions and max_discount_total, and applies racing reversals on a small max_uses.

Several CouponLedger instances on one database behave like separate processes (each has its own
writer thread, cache and connection pool), and threads fire the requests at them together. Each
writer's first reading of the clock waits for the others' (StartLine), so they all decide against
the same versions of the aggregates and all but one lose the store's version race; the losers re-read
and decide again. The counts are read back from the event log with SQL, independently of the code
under test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any, cast
from uuid import UUID, uuid4

import psycopg
import pytest

from api.database import eventsourcing_env
from ledger.application import CouponLedger
from ledger.commands import Receipt, Reversal
from ledger.domain import Coupon
from ledger.errors import LedgerError
from tests.support.commands import apply, create_campaign, create_coupon, reverse
from tests.support.postgres import StartLine, events_of, ledger_with_clock, race, scalar

LEDGERS = 4
D = Decimal


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def ledgers(database_url: str, open_ledgers: list[CouponLedger]) -> list[CouponLedger]:
    """LEDGERS ledgers on the test's database, as LEDGERS processes would have."""
    for _ in range(LEDGERS):
        open_ledgers.append(ledger_with_clock(eventsourcing_env(database_url, pool_size=2, max_overflow=4), now))
    return open_ledgers


def start_together(ledgers: list[CouponLedger]) -> None:
    """Make every ledger's writer wait for the others at its next first reading of the clock."""
    line = StartLine(len(ledgers))
    for ledger in ledgers:
        ledger.clock = line


def outcome(result: object) -> str:
    if isinstance(result, Receipt):
        return "REDEEMED"
    if isinstance(result, Reversal):
        return "ALREADY_REVERSED" if result.already_reversed else "REVERSED"
    if isinstance(result, LedgerError):
        return result.code
    return repr(result)


def uses_counts_after_each_event(ledger: CouponLedger, coupon_id: UUID) -> list[int]:
    """The coupon's uses_count as the domain held it after each of its events, in version order."""
    aggregate: Any = None
    counts = []
    for event in ledger.events.get(coupon_id):
        aggregate = cast(Any, event).mutate(aggregate)
        counts.append(aggregate.uses_count)
    return counts


def test_one_customer_firing_20_concurrent_applies_on_a_once_per_customer_coupon_gets_exactly_one(
    database_url: str, ledgers: list[CouponLedger]
) -> None:
    retailer_id = uuid4()
    coupon = create_coupon(ledgers[0], retailer_id, "ONCEEACH", "fixed", D("5.00"), max_uses_per_customer=1)
    start_together(ledgers)

    def apply_with(ledger: CouponLedger, n: int) -> Callable[[], Receipt]:
        return lambda: apply(ledger, retailer_id, "ONCEEACH", D("40.00"), order_id=f"o-{n}", customer_id="alice")

    results = race([apply_with(ledgers[n % LEDGERS], n) for n in range(20)])

    assert Counter(map(outcome, results)) == {"REDEEMED": 1, "CUSTOMER_LIMIT_REACHED": 19}, results
    refused = [r for r in results if isinstance(r, LedgerError)]
    assert all(r.details == {"customer_id": "alice", "max_uses_per_customer": 1, "uses": 1} for r in refused)
    assert sum(ledger.version_conflicts for ledger in ledgers) >= LEDGERS - 1  # the race did happen
    assert events_of(database_url, "Coupon.Redeemed", coupon.id) == 1
    assert events_of(database_url, "Redemption.Recorded") == 1
    assert events_of(database_url, "CustomerUsage.Started") == 1
    assert events_of(database_url, "CustomerUsage.Used") == 1
    # Another customer is still welcome, from any process.
    assert apply(ledgers[3], retailer_id, "ONCEEACH", D("40.00"), customer_id="bob").replayed is False


def test_a_campaign_with_max_redemptions_30_under_100_concurrent_applies_stops_at_exactly_30(
    database_url: str, ledgers: list[CouponLedger]
) -> None:
    retailer_id = uuid4()
    template = {"discount_type": "fixed", "discount_value": D("5.00")}
    campaign = create_campaign(ledgers[0], retailer_id, "Thirty", "THIRTY", 40, template, max_redemptions=30)
    codes = campaign_codes_sql(database_url, campaign.id)
    assert len(codes) == 40
    start_together(ledgers)

    def apply_with(ledger: CouponLedger, code: str) -> Callable[[], Receipt]:
        return lambda: apply(ledger, retailer_id, code, D("25.00"))

    results = race([apply_with(ledgers[n % LEDGERS], codes[n % len(codes)]) for n in range(100)])

    assert Counter(map(outcome, results)) == {"REDEEMED": 30, "CAMPAIGN_BUDGET_EXHAUSTED": 70}, Counter(
        map(outcome, results)
    )
    assert sum(ledger.version_conflicts for ledger in ledgers) >= LEDGERS - 1
    assert events_of(database_url, "Coupon.Redeemed") == 30
    assert events_of(database_url, "Campaign.Used", campaign.id) == 30
    assert events_of(database_url, "Redemption.Recorded") == 30
    for ledger in ledgers:
        assert ledger.get_campaign(retailer_id, campaign.id).redemptions == 30


def test_a_campaigns_max_discount_total_is_never_exceeded_by_a_cent_under_concurrent_applies(
    database_url: str, ledgers: list[CouponLedger]
) -> None:
    retailer_id = uuid4()
    budget = D("100.00")
    template = {"discount_type": "percentage", "discount_value": D("10")}
    campaign = create_campaign(ledgers[0], retailer_id, "Hundred", "HUNDRED", 25, template, max_discount_total=budget)
    codes = campaign_codes_sql(database_url, campaign.id)
    start_together(ledgers)
    # Discounts of 3.01 to 4.99: they add up to the budget at no round number, and most of the
    # 100 requests cannot fit.
    subtotals = [D("30.10") + D("0.19") * (n % 11) + D("0.01") * (n % 7) for n in range(100)]

    def apply_with(ledger: CouponLedger, code: str, subtotal: Decimal) -> Callable[[], Receipt]:
        return lambda: apply(ledger, retailer_id, code, subtotal)

    results = race([apply_with(ledgers[n % LEDGERS], codes[n % len(codes)], subtotals[n]) for n in range(100)])

    receipts = [r for r in results if isinstance(r, Receipt)]
    refused = [r for r in results if isinstance(r, LedgerError)]
    assert len(receipts) + len(refused) == 100, results
    assert {r.code for r in refused} == {"CAMPAIGN_BUDGET_EXHAUSTED"}
    spent = sum((r.quote.discount_amount for r in receipts), D("0.00"))
    assert spent <= budget
    logged = scalar(
        database_url,
        "SELECT coalesce(sum((convert_from(state, 'UTF8')::jsonb #>> '{discount_amount,_data_}')::numeric), 0)"
        " FROM ledger_events WHERE topic LIKE '%%:Campaign.Used' AND originator_id = %s",
        (campaign.id,),
    )
    assert logged == spent
    assert ledgers[2].get_campaign(retailer_id, campaign.id).discount_total == spent
    # Nothing was refused that would still fit: the budget only shrank, so every refused discount
    # exceeds what is left now.
    remaining = budget - spent
    for error in refused:
        assert D(error.details["remaining"]) >= remaining
        if "discount_amount" in error.details:
            assert D(error.details["discount_amount"]) > remaining
    assert sum(ledger.version_conflicts for ledger in ledgers) >= LEDGERS - 1


def test_applies_and_reversals_racing_on_a_max_uses_5_coupon_never_exceed_5_live_uses(
    database_url: str, ledgers: list[CouponLedger]
) -> None:
    retailer_id = uuid4()
    coupon = create_coupon(ledgers[0], retailer_id, "FIVE", "fixed", D("5.00"), max_uses=5)
    live: list[UUID] = []
    reversed_ids: set[UUID] = set()
    for round_number in range(6):
        start_together(ledgers)
        tasks: list[Callable[[], object]] = []
        for n in range(8):
            ledger = ledgers[n % LEDGERS]
            tasks.append(partial(apply, ledger, retailer_id, "FIVE", D("20.00")))
        # Every live redemption but one is reversed, twice, from two processes at once.
        to_reverse = live[: max(0, len(live) - 1)] if round_number % 2 else live[:2]
        for k, redemption_id in enumerate(to_reverse):
            for ledger in (ledgers[k % LEDGERS], ledgers[(k + 1) % LEDGERS]):
                tasks.append(partial(reverse, ledger, retailer_id, redemption_id, "cancelled"))

        results = race(tasks)

        outcomes = Counter(map(outcome, results))
        assert set(outcomes) <= {"REDEEMED", "USAGE_LIMIT_REACHED", "REVERSED", "ALREADY_REVERSED"}, results
        assert outcomes["REVERSED"] == outcomes["ALREADY_REVERSED"] == len(to_reverse)
        redeemed = [r.redemption_id for r in results if isinstance(r, Receipt)]
        live = [r for r in live if r not in to_reverse] + redeemed
        reversed_ids.update(to_reverse)

        made = events_of(database_url, "Coupon.Redeemed", coupon.id)
        given_back = events_of(database_url, "Coupon.RedemptionReversed", coupon.id)
        assert made - given_back == len(live) <= 5, (round_number, made, given_back)
        assert events_of(database_url, "Redemption.Reversed") == given_back == len(reversed_ids)
        counts = uses_counts_after_each_event(ledgers[0], coupon.id)
        assert max(counts) <= 5, counts
        assert counts[-1] == len(live) == ledgers[round_number % LEDGERS].get_coupon(retailer_id, "FIVE").uses_count
    assert sum(ledger.version_conflicts for ledger in ledgers) >= LEDGERS - 1
    # Each redemption was reversed at most once in the log.
    reversals = scalar(
        database_url,
        "SELECT count(DISTINCT convert_from(state, 'UTF8')::jsonb #>> '{redemption_id,_data_}')"
        " FROM ledger_events WHERE topic LIKE '%%:Coupon.RedemptionReversed'",
    )
    assert reversals == len(reversed_ids) > 0
    assert isinstance(ledgers[0].repository.get(coupon.id), Coupon)


def campaign_codes_sql(url: str, campaign_id: UUID) -> list[str]:
    """The codes of a campaign's coupons, read from their Coupon.Created events with SQL."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT convert_from(state, 'UTF8')::jsonb ->> 'code' FROM ledger_events"
            " WHERE topic LIKE '%%:Coupon.Created'"
            " AND convert_from(state, 'UTF8')::jsonb #>> '{campaign_id,_data_}' = %s ORDER BY 1",
            (campaign_id.hex,),
        ).fetchall()
    return [row[0] for row in rows]
