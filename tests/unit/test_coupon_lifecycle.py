"""A coupon's lifecycle on the in-memory store: the time window and the derived status, creating inactive, PATCH
(Coupon.Updated), archiving (Coupon.Archived) and the platform's state machine."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

import pytest

from ledger.application import CouponLedger
from ledger.domain import (
    ACTIVE,
    COUNT_EXPIRED,
    FIXED,
    FREE_SHIPPING,
    INACTIVE,
    PERCENTAGE,
    SCHEDULED,
    STATUSES,
    TIME_EXPIRED,
    TRANSITIONS,
)
from ledger.timestamps import format_timestamp
from tests.support.commands import (
    activate,
    apply,
    archive,
    call,
    create_coupon,
    deactivate,
    reverse,
    transition,
    update_coupon,
)
from tests.support.ledger import (
    DAY,
    HOUR,
    OTHER_RETAILER,
    RETAILER,
    START,
    D,
    ManualClock,
    code_of,
    coupon,
    data_of,
    error_from,
    event_types,
    item,
    served,
    status,
)

BOTH = pytest.mark.parametrize("operation", ["validate", "apply"])


def check(ledger: CouponLedger, operation: str, code: str, subtotal: str = "100.00", **kwargs: Any) -> object:
    return call(ledger, operation, RETAILER, code, D(subtotal), **kwargs)


# --- the time window and the derived status ----------------------------------------------------------


class TestTimeWindowAndStatus:
    @BOTH
    def test_before_starts_at_the_coupon_is_not_started_and_names_its_start(
        self, ledger: CouponLedger, clock: ManualClock, operation: str
    ) -> None:
        starts_at = START + HOUR
        create_coupon(ledger, RETAILER, "LATER", FIXED, D("5.00"), starts_at=starts_at)
        error = error_from(lambda: check(ledger, operation, "LATER"))
        assert error.code == "COUPON_NOT_STARTED"
        assert error.details == {"starts_at": format_timestamp(starts_at)}
        clock.set(starts_at - timedelta(microseconds=1))
        assert code_of(lambda: check(ledger, operation, "LATER")) == "COUPON_NOT_STARTED"
        assert coupon(ledger, "LATER").uses_count == 0

    @BOTH
    def test_the_coupon_is_usable_from_exactly_starts_at(
        self, ledger: CouponLedger, clock: ManualClock, operation: str
    ) -> None:
        create_coupon(ledger, RETAILER, "LATER", FIXED, D("5.00"), starts_at=START + HOUR)
        clock.set(START + HOUR)
        check(ledger, operation, "LATER")

    def test_a_starts_at_in_the_past_is_accepted_and_the_coupon_is_active(
        self, ledger: CouponLedger, clock: ManualClock
    ) -> None:
        create_coupon(ledger, RETAILER, "BEGUN", FIXED, D("5.00"), starts_at=START - DAY)
        assert status(ledger, "BEGUN", clock) == ACTIVE
        assert apply(ledger, RETAILER, "BEGUN", D("10.00")).quote.discount_amount == D("5.00")

    def test_each_of_the_five_statuses_is_derived_from_the_terms_the_clock_and_the_count(
        self, ledger: CouponLedger, clock: ManualClock
    ) -> None:
        create_coupon(ledger, RETAILER, "OFF", FIXED, D("5.00"), is_active=False)
        create_coupon(ledger, RETAILER, "SOON", FIXED, D("5.00"), starts_at=START + HOUR)
        create_coupon(ledger, RETAILER, "OVER", FIXED, D("5.00"), expires_at=START + HOUR)
        create_coupon(ledger, RETAILER, "USED", FIXED, D("5.00"), max_uses=1)
        create_coupon(ledger, RETAILER, "FINE", FIXED, D("5.00"), max_uses=2, expires_at=START + DAY)
        apply(ledger, RETAILER, "USED", D("10.00"))
        apply(ledger, RETAILER, "FINE", D("10.00"))
        assert [status(ledger, c, clock) for c in ("OFF", "SOON", "OVER", "USED", "FINE")] == [
            INACTIVE,
            SCHEDULED,
            ACTIVE,
            COUNT_EXPIRED,
            ACTIVE,
        ]
        clock.set(START + HOUR)  # SOON has started, OVER has ended: no event was needed for either
        assert [status(ledger, c, clock) for c in ("OFF", "SOON", "OVER", "USED", "FINE")] == [
            INACTIVE,
            ACTIVE,
            TIME_EXPIRED,
            COUNT_EXPIRED,
            ACTIVE,
        ]
        assert event_types(ledger, "SOON") == event_types(ledger, "OVER") == ["Coupon.Created"]
        assert set(STATUSES) == {INACTIVE, SCHEDULED, TIME_EXPIRED, COUNT_EXPIRED, ACTIVE}

    def test_status_is_computed_at_read_time_from_the_same_state(self, ledger: CouponLedger) -> None:
        read = create_coupon(
            ledger, RETAILER, "WINDOW", FIXED, D("5.00"), starts_at=START + HOUR, expires_at=START + 2 * HOUR
        )
        assert [read.status(START + k * HOUR) for k in range(4)] == [SCHEDULED, ACTIVE, TIME_EXPIRED, TIME_EXPIRED]

    def test_status_precedence_inactive_then_scheduled_then_time_expired_then_count_expired(
        self, ledger: CouponLedger, clock: ManualClock
    ) -> None:
        create_coupon(ledger, RETAILER, "ALL", FIXED, D("5.00"), max_uses=1, expires_at=START + HOUR)
        apply(ledger, RETAILER, "ALL", D("10.00"))
        assert status(ledger, "ALL", clock) == COUNT_EXPIRED
        clock.set(START + HOUR)
        assert status(ledger, "ALL", clock) == TIME_EXPIRED  # expired and used up
        update_coupon(ledger, RETAILER, "ALL", {"starts_at": START + 2 * HOUR, "expires_at": START + 3 * HOUR})
        assert status(ledger, "ALL", clock) == SCHEDULED  # not started, and used up
        deactivate(ledger, RETAILER, "ALL")
        assert status(ledger, "ALL", clock) == INACTIVE

    def test_a_coupon_created_inactive_is_inactive_refused_and_can_be_activated(
        self, ledger: CouponLedger, clock: ManualClock
    ) -> None:
        created = create_coupon(ledger, RETAILER, "DRAFT", PERCENTAGE, D("10"), is_active=False)
        assert (created.is_active, created.status(clock())) == (False, INACTIVE)
        assert code_of(lambda: ledger.validate(RETAILER, "DRAFT", D("100.00"))) == "COUPON_INACTIVE"
        assert code_of(lambda: apply(ledger, RETAILER, "DRAFT", D("100.00"))) == "COUPON_INACTIVE"
        assert activate(ledger, RETAILER, "DRAFT").status(clock()) == ACTIVE
        assert apply(ledger, RETAILER, "DRAFT", D("100.00")).quote.discount_amount == D("10.00")
        assert event_types(ledger, "DRAFT") == ["Coupon.Created", "Coupon.Activated", "Coupon.Redeemed"]

    @pytest.mark.parametrize("gap", [timedelta(0), -timedelta(seconds=1)], ids=["equal", "before"])
    def test_expires_at_not_after_starts_at_is_refused_on_create(self, ledger: CouponLedger, gap: timedelta) -> None:
        error = error_from(
            lambda: create_coupon(
                ledger, RETAILER, "BACKWARDS", FIXED, D("5.00"), starts_at=START + HOUR, expires_at=START + HOUR + gap
            )
        )
        assert error.code == "VALIDATION_FAILED"
        assert [e["field"] for e in error.details["errors"]] == ["expires_at"]
        assert code_of(lambda: ledger.get_coupon(RETAILER, "BACKWARDS")) == "COUPON_NOT_FOUND"


# --- PATCH: Coupon.Updated ---------------------------------------------------------------------------


class TestUpdate:
    def test_patch_changes_every_mutable_term_in_one_updated_event(
        self, ledger: CouponLedger, clock: ManualClock
    ) -> None:
        create_coupon(ledger, RETAILER, "EDIT", PERCENTAGE, D("10"))
        changes = {
            "min_order_value": D("20.00"),
            "starts_at": START - HOUR,
            "expires_at": START + DAY,
            "max_uses": 5,
            "max_uses_per_customer": 2,
            "max_discount_amount": D("7.50"),
            "scope": {"product_ids": ["p2", "p1"], "excluded_category_ids": ["gift"], "variant_ids": []},
            "public": True,
        }
        updated = update_coupon(ledger, RETAILER, "edit", changes)
        stored_scope = {"product_ids": ["p1", "p2"], "excluded_category_ids": ["gift"]}
        assert {name: getattr(updated, name) for name in changes} == {**changes, "scope": stored_scope}
        events = ledger.coupon_events(RETAILER, "EDIT")
        assert [(e.version, e.type) for e in events] == [(1, "Coupon.Created"), (2, "Coupon.Updated")]
        assert data_of(events[1]) == served({"changes": {**changes, "scope": stored_scope}})
        again = coupon(ledger, "EDIT")  # read back from the store
        assert {name: getattr(again, name) for name in changes} == {**changes, "scope": stored_scope}
        quote = ledger.validate(RETAILER, "EDIT", None, items=[item("p1", "100.00")], customer_id="c1")
        assert quote.discount_amount == D("7.50")

    def test_the_updated_event_holds_only_what_changed_and_a_patch_changing_nothing_records_nothing(
        self, ledger: CouponLedger
    ) -> None:
        create_coupon(ledger, RETAILER, "EDIT", FIXED, D("5.00"), max_uses=3, min_order_value=D("10.00"))
        update_coupon(ledger, RETAILER, "EDIT", {"max_uses": 3, "min_order_value": D("12.00")})
        assert data_of(ledger.coupon_events(RETAILER, "EDIT")[-1]) == {"changes": {"min_order_value": "12.00"}}
        unchanged = update_coupon(ledger, RETAILER, "EDIT", {"max_uses": 3, "min_order_value": D("12.00")})
        assert unchanged.version == 2
        assert update_coupon(ledger, RETAILER, "EDIT", {}).version == 2
        assert event_types(ledger, "EDIT") == ["Coupon.Created", "Coupon.Updated"]

    @pytest.mark.parametrize(
        ("name", "value"),
        [("discount_type", FIXED), ("discount_value", D("20")), ("code", "OTHER"), ("campaign_id", None)],
    )
    def test_type_value_code_and_campaign_are_immutable(self, ledger: CouponLedger, name: str, value: Any) -> None:
        create_coupon(ledger, RETAILER, "FIRM", PERCENTAGE, D("10"))
        error = error_from(lambda: update_coupon(ledger, RETAILER, "FIRM", {"max_uses": 9, name: value}))
        assert error.code == "FIELD_IMMUTABLE"
        assert error.details == {"field": name}
        assert name in error.message
        firm = coupon(ledger, "FIRM")
        assert (firm.discount_type, firm.discount_value, firm.max_uses, firm.version) == (PERCENTAGE, D("10"), None, 1)

    def test_sending_an_immutable_field_with_its_current_value_is_still_field_immutable(
        self, ledger: CouponLedger
    ) -> None:
        create_coupon(ledger, RETAILER, "FIRM", PERCENTAGE, D("10"))
        error = error_from(lambda: update_coupon(ledger, RETAILER, "FIRM", {"discount_value": D("10")}))
        assert (error.code, error.details) == ("FIELD_IMMUTABLE", {"field": "discount_value"})

    @pytest.mark.parametrize("name", ["is_active", "uses_count", "archived", "retailer_id", "colour"])
    def test_a_field_patch_cannot_change_is_a_validation_error_naming_it(self, ledger: CouponLedger, name: str) -> None:
        create_coupon(ledger, RETAILER, "FIRM", FIXED, D("5.00"))
        error = error_from(lambda: update_coupon(ledger, RETAILER, "FIRM", {name: 1}))
        assert error.code == "VALIDATION_FAILED"
        assert [e["field"] for e in error.details["errors"]] == [name]
        assert coupon(ledger, "FIRM").version == 1

    def test_null_removes_each_limit(self, ledger: CouponLedger, clock: ManualClock) -> None:
        create_coupon(
            ledger,
            RETAILER,
            "LIMITS",
            PERCENTAGE,
            D("50"),
            min_order_value=D("80.00"),
            max_uses=1,
            max_uses_per_customer=1,
            max_discount_amount=D("5.00"),
            starts_at=START - HOUR,
            expires_at=START + HOUR,
            scope={"product_ids": ["p1"]},
        )
        apply(ledger, RETAILER, "LIMITS", None, items=[item("p1", "100.00")], customer_id="c1")
        clock.set(START + HOUR)
        assert status(ledger, "LIMITS", clock) == TIME_EXPIRED
        names = [
            "min_order_value",
            "max_uses",
            "max_uses_per_customer",
            "max_discount_amount",
            "starts_at",
            "expires_at",
            "scope",
        ]
        updated = update_coupon(ledger, RETAILER, "LIMITS", dict.fromkeys(names))
        assert [getattr(updated, name) for name in names] == [None] * len(names)
        assert updated.status(clock()) == ACTIVE
        # No minimum, no total or per-customer limit (no customer id needed), no cap, any product.
        quote = apply(ledger, RETAILER, "LIMITS", D("10.00")).quote
        assert quote.discount_amount == D("5.00")
        assert apply(ledger, RETAILER, "LIMITS", D("200.00")).quote.discount_amount == D("100.00")
        assert coupon(ledger, "LIMITS").uses_count == 3

    def test_lowering_max_uses_below_the_uses_made_is_allowed_and_makes_the_coupon_count_expired(
        self, ledger: CouponLedger, clock: ManualClock
    ) -> None:
        create_coupon(ledger, RETAILER, "SHRINK", FIXED, D("5.00"), max_uses=10)
        for _ in range(3):
            apply(ledger, RETAILER, "SHRINK", D("10.00"))
        shrunk = update_coupon(ledger, RETAILER, "SHRINK", {"max_uses": 2})
        assert (shrunk.max_uses, shrunk.uses_count, shrunk.status(clock())) == (2, 3, COUNT_EXPIRED)
        error = error_from(lambda: apply(ledger, RETAILER, "SHRINK", D("10.00")))
        assert (error.code, error.details) == ("USAGE_LIMIT_REACHED", {"max_uses": 2})
        assert update_coupon(ledger, RETAILER, "SHRINK", {"max_uses": 4}).status(clock()) == ACTIVE
        apply(ledger, RETAILER, "SHRINK", D("10.00"))
        assert status(ledger, "SHRINK", clock) == COUNT_EXPIRED
        assert coupon(ledger, "SHRINK").uses_count == 4

    @pytest.mark.parametrize(
        "changes",
        [
            {"starts_at": START + 2 * HOUR, "expires_at": START + HOUR},
            {"starts_at": START + HOUR, "expires_at": START + HOUR},
            {"starts_at": START + 2 * DAY},  # after the stored expires_at
            {"expires_at": START - 2 * HOUR},  # before the stored starts_at
        ],
        ids=["both-backwards", "equal", "start-after-stored-expiry", "expiry-before-stored-start"],
    )
    def test_a_window_that_ends_before_it_starts_is_refused(
        self, ledger: CouponLedger, changes: dict[str, Any]
    ) -> None:
        create_coupon(ledger, RETAILER, "WINDOW", FIXED, D("5.00"), starts_at=START - HOUR, expires_at=START + DAY)
        error = error_from(lambda: update_coupon(ledger, RETAILER, "WINDOW", changes))
        assert error.code == "VALIDATION_FAILED"
        assert [e["field"] for e in error.details["errors"]] == ["expires_at"]
        window = coupon(ledger, "WINDOW")
        assert (window.starts_at, window.expires_at, window.version) == (START - HOUR, START + DAY, 1)

    @pytest.mark.parametrize(
        ("discount_type", "value", "changes", "field"),
        [
            (FIXED, "5.00", {"max_discount_amount": D("3.00")}, "max_discount_amount"),
            (FREE_SHIPPING, "0", {"max_discount_amount": D("3.00")}, "max_discount_amount"),
            (PERCENTAGE, "10", {"max_discount_amount": D("0.00")}, "max_discount_amount"),
            (PERCENTAGE, "10", {"max_uses": 0}, "max_uses"),
            (PERCENTAGE, "10", {"max_uses_per_customer": 0}, "max_uses_per_customer"),
        ],
        ids=["cap-on-fixed", "cap-on-free-shipping", "zero-cap", "zero-max-uses", "zero-per-customer"],
    )
    def test_invalid_terms_are_refused_on_patch_and_on_create(
        self, ledger: CouponLedger, discount_type: str, value: str, changes: dict[str, Any], field: str
    ) -> None:
        create_coupon(ledger, RETAILER, "TERMS", discount_type, D(value))
        error = error_from(lambda: update_coupon(ledger, RETAILER, "TERMS", changes))
        assert error.code == "VALIDATION_FAILED"
        assert [e["field"] for e in error.details["errors"]] == [field]
        assert coupon(ledger, "TERMS").version == 1
        error = error_from(lambda: create_coupon(ledger, RETAILER, "TERMS2", discount_type, D(value), **changes))
        assert [e["field"] for e in error.details["errors"]] == [field]

    def test_patching_another_retailers_coupon_is_not_found(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "MINE", FIXED, D("5.00"))
        assert code_of(lambda: update_coupon(ledger, OTHER_RETAILER, "MINE", {"max_uses": 1})) == "COUPON_NOT_FOUND"
        assert coupon(ledger, "MINE").max_uses is None


# --- DELETE: Coupon.Archived -------------------------------------------------------------------------


class TestArchive:
    def test_an_archived_coupon_is_not_found_for_reads_checks_and_changes(
        self, ledger: CouponLedger, clock: ManualClock
    ) -> None:
        create_coupon(ledger, RETAILER, "GONE", FIXED, D("5.00"))
        apply(ledger, RETAILER, "GONE", D("10.00"))
        archived = archive(ledger, RETAILER, "gone")
        assert archived.archived is True
        attempts = {
            "get": lambda: ledger.get_coupon(RETAILER, "GONE"),
            "validate": lambda: ledger.validate(RETAILER, "GONE", D("10.00")),
            "apply": lambda: apply(ledger, RETAILER, "GONE", D("10.00")),
            "keyed apply": lambda: apply(ledger, RETAILER, "GONE", D("10.00"), idempotency_key="new-key"),
            "update": lambda: update_coupon(ledger, RETAILER, "GONE", {"max_uses": 5}),
            "deactivate": lambda: deactivate(ledger, RETAILER, "GONE"),
            "activate": lambda: activate(ledger, RETAILER, "GONE"),
            "transition": lambda: transition(ledger, RETAILER, "GONE", "deactivate"),
            "archive again": lambda: archive(ledger, RETAILER, "GONE"),
        }
        assert {name: code_of(call) for name, call in attempts.items()} == dict.fromkeys(attempts, "COUPON_NOT_FOUND")
        assert event_types(ledger, "GONE") == ["Coupon.Created", "Coupon.Redeemed", "Coupon.Archived"]

    def test_history_is_kept_and_the_code_stays_taken(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "GONE", FIXED, D("5.00"))
        archive(ledger, RETAILER, "GONE")
        kept = ledger.get_coupon(RETAILER, "GONE", archived=True)
        assert (kept.code, kept.archived, kept.version) == ("GONE", True, 2)
        error = error_from(lambda: create_coupon(ledger, RETAILER, "gone", PERCENTAGE, D("10")))
        assert (error.code, error.details) == ("COUPON_CODE_TAKEN", {"code": "GONE"})
        # Another retailer's code space is its own.
        assert create_coupon(ledger, OTHER_RETAILER, "GONE", FIXED, D("5.00")).version == 1

    def test_a_redemption_made_before_archiving_still_replays_and_can_be_reversed(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "GONE", FIXED, D("5.00"), max_uses=1)
        first = apply(ledger, RETAILER, "GONE", D("10.00"), idempotency_key="order-1")
        archive(ledger, RETAILER, "GONE")
        again = apply(ledger, RETAILER, "GONE", D("10.00"), idempotency_key="order-1")
        assert (again.replayed, again.redemption_id) == (True, first.redemption_id)
        reversal = reverse(ledger, RETAILER, first.redemption_id, "order cancelled")
        assert reversal.already_reversed is False
        kept = ledger.get_coupon(RETAILER, "GONE", archived=True)
        assert (kept.uses_count, kept.archived) == (0, True)
        assert code_of(lambda: apply(ledger, RETAILER, "GONE", D("10.00"))) == "COUPON_NOT_FOUND"

    def test_another_retailer_cannot_archive_a_coupon(self, ledger: CouponLedger) -> None:
        create_coupon(ledger, RETAILER, "MINE", FIXED, D("5.00"))
        assert code_of(lambda: archive(ledger, OTHER_RETAILER, "MINE")) == "COUPON_NOT_FOUND"
        assert coupon(ledger, "MINE").archived is False


# --- the platform's state machine --------------------------------------------------------------------

EVENTS = ("activate", "deactivate", "extend_expiry_and_activate", "reconcile_count_status")
# The arrows of the platform's diagram (shared/seeds/003_*): (from, event, to). expire_time and
# expire_count happen by themselves in our model (the status is derived from the clock and the count).
DIAGRAM = [
    (INACTIVE, "activate", ACTIVE),
    (ACTIVE, "deactivate", INACTIVE),
    (ACTIVE, "expire_time", TIME_EXPIRED),
    (ACTIVE, "expire_count", COUNT_EXPIRED),
    (TIME_EXPIRED, "activate", ACTIVE),
    (COUNT_EXPIRED, "activate", ACTIVE),
    (INACTIVE, "reconcile_count_status", COUNT_EXPIRED),
    (COUNT_EXPIRED, "reconcile_count_status", ACTIVE),
    (INACTIVE, "reconcile_count_status", INACTIVE),
    (COUNT_EXPIRED, "reconcile_count_status", COUNT_EXPIRED),
    (ACTIVE, "reconcile_count_status", ACTIVE),
    (TIME_EXPIRED, "extend_expiry_and_activate", ACTIVE),
    (ACTIVE, "extend_expiry_and_activate", ACTIVE),
    (INACTIVE, "extend_expiry_and_activate", ACTIVE),
    (INACTIVE, "extend_expiry_and_activate", COUNT_EXPIRED),
    (COUNT_EXPIRED, "extend_expiry_and_activate", COUNT_EXPIRED),
]
# `scheduled` (not in the diagram) takes the arrows of `active` (see TRANSITIONS in ledger/domain/values.py).
ALLOWED = {(source, name) for source, name, _ in DIAGRAM if name in EVENTS} | {
    (SCHEDULED, name) for source, name, _ in DIAGRAM if source == ACTIVE and name in EVENTS
}
FORBIDDEN = sorted({(s, e) for s in STATUSES for e in EVENTS} - ALLOWED)
# Arrows that cannot happen as drawn: the status is derived from the count, so while the uses fill
# max_uses a count_expired coupon stays count_expired whatever event it is sent (the domain answers
# with the coupon and records nothing). It turns active by itself once the count drops.
UNREACHABLE = {
    (COUNT_EXPIRED, "activate", ACTIVE): (COUNT_EXPIRED, "activate", COUNT_EXPIRED),
    (COUNT_EXPIRED, "reconcile_count_status", ACTIVE): (COUNT_EXPIRED, "reconcile_count_status", COUNT_EXPIRED),
}


class Machine:
    """Puts a fresh coupon in each status and fires events at it."""

    def __init__(self, ledger: CouponLedger, clock: ManualClock) -> None:
        self.ledger = ledger
        self.clock = clock
        self.count = 0

    def coupon_in(self, wanted: str, used_up: bool = False) -> str:
        """A new coupon in status ``wanted``; ``used_up``: its one use is made (for inactive)."""
        self.count += 1
        code = f"SM{self.count}"
        now = self.clock()
        terms: dict[str, Any] = {"max_uses": 1}
        if wanted == SCHEDULED:
            terms["starts_at"] = now + HOUR
        if wanted == TIME_EXPIRED:
            terms["starts_at"], terms["expires_at"] = now - 2 * HOUR, now - HOUR
        create_coupon(self.ledger, RETAILER, code, FIXED, D("5.00"), **terms)
        if wanted == COUNT_EXPIRED or used_up:
            apply(self.ledger, RETAILER, code, D("10.00"))
        if wanted == INACTIVE:
            deactivate(self.ledger, RETAILER, code)
        assert status(self.ledger, code, self.clock) == wanted
        return code

    def fire(self, code: str, name: str, **kwargs: Any) -> str:
        return transition(self.ledger, RETAILER, code, name, **kwargs).status(self.clock())

    def status(self, code: str) -> str:
        return status(self.ledger, code, self.clock)


class TestStateMachine:
    @pytest.fixture
    def machine(self, ledger: CouponLedger, clock: ManualClock) -> Machine:
        return Machine(ledger, clock)

    def test_the_transitions_table_allows_exactly_the_diagrams_events_with_scheduled_as_active(self) -> None:
        assert {(s, e) for e, sources in TRANSITIONS.items() for s in sources} == ALLOWED

    def test_every_arrow_of_the_diagram(self, machine: Machine, ledger: CouponLedger, clock: ManualClock) -> None:
        """Each arrow fired at a coupon in its source status; ``walked`` records (status before,
        event, status after). Two arrows out of count_expired cannot happen as drawn (see
        UNREACHABLE); the walk records what the domain does instead."""
        later = clock() + DAY
        walked: list[tuple[str, str, str]] = []

        def walk(name: str, code: str, **kwargs: Any) -> None:
            before = machine.status(code)
            walked.append((before, name, machine.fire(code, name, **kwargs)))

        walk("activate", machine.coupon_in(INACTIVE))
        walk("deactivate", machine.coupon_in(ACTIVE))
        # expire_time: the clock passes expires_at; no event is sent or stored.
        code = machine.coupon_in(ACTIVE)
        update_coupon(ledger, RETAILER, code, {"expires_at": clock() + HOUR})
        clock.advance(HOUR)
        walked.append((ACTIVE, "expire_time", machine.status(code)))
        assert event_types(ledger, code) == ["Coupon.Created", "Coupon.Updated"]
        clock.set(START)
        # expire_count: the use that fills max_uses.
        code = machine.coupon_in(ACTIVE)
        apply(ledger, RETAILER, code, D("10.00"))
        walked.append((ACTIVE, "expire_count", machine.status(code)))
        # time_expired --activate--> active takes a new expiry (without one: 422, tested below).
        walk("activate", machine.coupon_in(TIME_EXPIRED), expires_at=later)
        walk("activate", machine.coupon_in(COUNT_EXPIRED))
        walk("reconcile_count_status", machine.coupon_in(INACTIVE, used_up=True))
        walk("reconcile_count_status", machine.coupon_in(COUNT_EXPIRED))
        walk("reconcile_count_status", machine.coupon_in(INACTIVE))
        walk("reconcile_count_status", machine.coupon_in(COUNT_EXPIRED))
        walk("reconcile_count_status", machine.coupon_in(ACTIVE))
        walk("extend_expiry_and_activate", machine.coupon_in(TIME_EXPIRED), expires_at=later)
        walk("extend_expiry_and_activate", machine.coupon_in(ACTIVE), expires_at=later)
        walk("extend_expiry_and_activate", machine.coupon_in(INACTIVE), expires_at=later)
        walk("extend_expiry_and_activate", machine.coupon_in(INACTIVE, used_up=True), expires_at=later)
        walk("extend_expiry_and_activate", machine.coupon_in(COUNT_EXPIRED), expires_at=later)

        assert walked == [UNREACHABLE.get(arrow, arrow) for arrow in DIAGRAM]

    def test_count_expired_becomes_active_by_itself_when_the_count_drops(
        self, machine: Machine, ledger: CouponLedger
    ) -> None:
        """What stands for the two unreachable arrows: the status follows the count, so a reversal
        or a PATCH raising max_uses takes count_expired to active with no state-machine event."""
        raised = machine.coupon_in(COUNT_EXPIRED)
        update_coupon(ledger, RETAILER, raised, {"max_uses": 2})
        assert machine.status(raised) == ACTIVE
        assert machine.fire(raised, "reconcile_count_status") == ACTIVE
        self_count = machine.coupon_in(ACTIVE)
        receipt = apply(ledger, RETAILER, self_count, D("10.00"))
        assert machine.status(self_count) == COUNT_EXPIRED
        reverse(ledger, RETAILER, receipt.redemption_id)
        assert machine.status(self_count) == ACTIVE

    def test_each_arrow_records_the_events_that_make_it_true(self, machine: Machine, ledger: CouponLedger) -> None:
        later = START + DAY
        code = machine.coupon_in(INACTIVE)
        machine.fire(code, "activate")
        assert event_types(ledger, code)[-1] == "Coupon.Activated"
        machine.fire(code, "deactivate")
        assert event_types(ledger, code)[-1] == "Coupon.Deactivated"
        machine.fire(code, "extend_expiry_and_activate", expires_at=later)
        assert event_types(ledger, code)[-2:] == ["Coupon.Updated", "Coupon.Activated"]
        assert coupon(ledger, code).expires_at == later
        before = event_types(ledger, code)
        machine.fire(code, "reconcile_count_status")  # active -> active: nothing to record
        machine.fire(code, "extend_expiry_and_activate", expires_at=later)  # same expiry, already active
        assert event_types(ledger, code) == before
        used = machine.coupon_in(INACTIVE, used_up=True)
        machine.fire(used, "reconcile_count_status")
        assert event_types(ledger, used)[-1] == "Coupon.Activated"  # inactive -> count_expired

    def test_scheduled_takes_the_arrows_of_active(self, machine: Machine, clock: ManualClock) -> None:
        assert machine.fire(machine.coupon_in(SCHEDULED), "deactivate") == INACTIVE
        assert machine.fire(machine.coupon_in(SCHEDULED), "reconcile_count_status") == SCHEDULED
        code = machine.coupon_in(SCHEDULED)
        assert machine.fire(code, "extend_expiry_and_activate", expires_at=clock() + DAY) == SCHEDULED
        clock.advance(HOUR)
        assert machine.status(code) == ACTIVE  # the window opened by itself

    @pytest.mark.parametrize(("source", "name"), FORBIDDEN, ids=[f"{s}-{e}" for s, e in FORBIDDEN])
    def test_every_forbidden_pair_is_invalid_transition_naming_the_event_and_the_status(
        self, machine: Machine, ledger: CouponLedger, source: str, name: str
    ) -> None:
        code = machine.coupon_in(source)
        before = event_types(ledger, code)
        error = error_from(lambda: machine.fire(code, name, expires_at=START + DAY))
        assert error.code == "INVALID_TRANSITION"
        assert error.details["event"] == name
        assert error.details["status"] == source
        assert error.details["allowed_events"] == sorted(e for s, e in ALLOWED if s == source)
        assert name in error.message and source in error.message
        assert event_types(ledger, code) == before
        assert machine.status(code) == source

    def test_the_forbidden_pairs_are_the_ones_the_diagram_lacks(self) -> None:
        assert FORBIDDEN == [
            (ACTIVE, "activate"),
            (COUNT_EXPIRED, "deactivate"),
            (INACTIVE, "deactivate"),
            (SCHEDULED, "activate"),
            (TIME_EXPIRED, "deactivate"),
            (TIME_EXPIRED, "reconcile_count_status"),
        ]

    def test_an_unknown_event_is_a_validation_error_on_event(self, machine: Machine) -> None:
        code = machine.coupon_in(ACTIVE)
        for name in ("expire_time", "expire_count", "archive", "ACTIVATE", ""):
            error = error_from(partial(machine.fire, code, name))
            assert error.code == "VALIDATION_FAILED"
            assert [e["field"] for e in error.details["errors"]] == ["event"]

    def test_activating_a_time_expired_coupon_without_a_new_expiry_is_a_validation_error(
        self, machine: Machine, ledger: CouponLedger, clock: ManualClock
    ) -> None:
        code = machine.coupon_in(TIME_EXPIRED)
        error = error_from(lambda: machine.fire(code, "activate"))
        assert error.code == "VALIDATION_FAILED"
        assert [e["field"] for e in error.details["errors"]] == ["expires_at"]
        past = error_from(lambda: machine.fire(code, "activate", expires_at=clock() - timedelta(seconds=1)))
        assert [e["field"] for e in past.details["errors"]] == ["expires_at"]
        assert machine.fire(code, "activate", expires_at=None) == ACTIVE  # null: no expiry any more
        assert coupon(ledger, code).expires_at is None

    def test_extend_expiry_and_activate_requires_a_future_expires_at(self, machine: Machine) -> None:
        code = machine.coupon_in(TIME_EXPIRED)
        missing = error_from(lambda: machine.fire(code, "extend_expiry_and_activate"))
        assert [e["field"] for e in missing.details["errors"]] == ["expires_at"]
        past = error_from(lambda: machine.fire(code, "extend_expiry_and_activate", expires_at=START))
        assert [e["field"] for e in past.details["errors"]] == ["expires_at"]
        assert machine.status(code) == TIME_EXPIRED

    def test_activate_cannot_take_a_count_expired_coupon_to_active(
        self, machine: Machine, ledger: CouponLedger
    ) -> None:
        """The diagram's count_expired --activate--> active cannot happen while the uses still fill
        max_uses: the status follows the count. The domain answers with the coupon, still
        count_expired, and records nothing; raising max_uses (PATCH) or a reversal makes it active."""
        code = machine.coupon_in(COUNT_EXPIRED)
        assert machine.fire(code, "activate") == COUNT_EXPIRED
        assert event_types(ledger, code) == ["Coupon.Created", "Coupon.Redeemed"]
        # From inactive with its uses spent, activate leads to count_expired, not active.
        spent = machine.coupon_in(INACTIVE, used_up=True)
        assert machine.fire(spent, "activate") == COUNT_EXPIRED

    def test_deactivate_and_activate_routes_stay_harmless_to_repeat_outside_the_machine(
        self, machine: Machine, ledger: CouponLedger
    ) -> None:
        code = machine.coupon_in(COUNT_EXPIRED)
        assert code_of(lambda: machine.fire(code, "deactivate")) == "INVALID_TRANSITION"
        assert deactivate(ledger, RETAILER, code).is_active is False  # POST /deactivate: from any status
        deactivate(ledger, RETAILER, code)
        activate(ledger, RETAILER, code)
        activate(ledger, RETAILER, code)
        assert event_types(ledger, code)[-2:] == ["Coupon.Deactivated", "Coupon.Activated"]
