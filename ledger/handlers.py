"""How each command is decided: one handler per command class, run by the writer against its batch.

A handler reads aggregates through the batch (``batch.get``), changes them, registers the new
ones (``batch.add``) and returns the command's answer, or raises the refusal. It may be run more
than once for one command (after another process wrote the same aggregates first, or a sibling
of the batch was refused): it must decide from the batch alone, and its time is ``batch.now``,
the one clock of the attempt (the database's, on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from functools import singledispatch
from typing import Any
from uuid import UUID, uuid4

from ledger.batch import Batch
from ledger.commands import (
    Activate,
    Archive,
    Command,
    Confirm,
    CreateCoupon,
    Deactivate,
    ExpireHolds,
    GenerateCodes,
    Hold,
    HoldEnded,
    InTransaction,
    Receipt,
    Redeem,
    Release,
    Reserve,
    Reversal,
    Reverse,
    StartCampaign,
    Transition,
    UpdateCoupon,
)
from ledger.domain import (
    FREE_SHIPPING,
    MAX_HOLD_SECONDS,
    RESERVATION_CONFIRMED,
    RESERVATION_EXPIRED,
    RESERVATION_HELD,
    RESERVATION_RELEASED,
    ZERO,
    Campaign,
    Coupon,
    CustomerUsage,
    Redemption,
    Reservation,
    Scope,
    ascii_upper,
    check_customer_id,
    check_discount,
    check_terms,
    confirmed_redemption_id_for,
    coupon_id_for,
    customer_usage_id_for,
    normalize_code,
    reservation_id_for,
)
from ledger.errors import (
    CampaignBudgetExhausted,
    CouponCodeTaken,
    CouponNotFound,
    CustomerLimitReached,
    InvalidCoupon,
    InvalidTransition,
    RedemptionNotFound,
    ReservationExpired,
    ReservationNotFound,
    UsageLimitReached,
)
from ledger.money import format_amount
from ledger.timestamps import format_timestamp
from ledger.uses import UseRequest, check_replay, use_of

# Every field of a new coupon but its code, with its default.
COUPON_FIELDS: dict[str, Any] = {
    "discount_type": None,
    "discount_value": None,
    "min_order_value": None,
    "starts_at": None,
    "expires_at": None,
    "max_uses": None,
    "max_uses_per_customer": None,
    "max_discount_amount": None,
    "scope": None,
    "public": False,
    "is_active": True,
}


def created(command: Command[Any]) -> tuple[UUID, ...]:
    """Those of its needs that the command creates if they do not exist and otherwise only replays
    (an idempotency key's redemption or hold): the writer may take them as new without a read,
    because the store's version check refuses a save that creates one that exists."""
    match command:
        case InTransaction():
            return created(command.command)
        case Redeem():
            keyed = UseRequest.of(command).keyed_id
            return (keyed,) if keyed is not None else ()
        case Reserve() if command.idempotency_key:
            return (reservation_id_for(command.retailer_id, command.idempotency_key),)
    return ()


def needs(command: Command[Any]) -> tuple[UUID, ...]:
    """The aggregates the command will read, brought up to date together before it is decided."""
    match command:
        case InTransaction():
            return needs(command.command)
        case CreateCoupon() | UpdateCoupon() | Deactivate() | Activate() | Transition() | Archive():
            try:
                return (coupon_id_for(command.retailer_id, normalize_code(command.code)),)
            except InvalidCoupon:
                return ()
        case Redeem():
            use = UseRequest.of(command)
            return (*use.needs, *([use.keyed_id] if use.keyed_id is not None else []))
        case Reserve():
            use = UseRequest.of(command, ttl_seconds=command.ttl_seconds)
            keyed = (
                reservation_id_for(command.retailer_id, command.idempotency_key) if command.idempotency_key else None
            )
            return (*use.needs, *(i for i in (keyed, command.release) if i is not None))
        case Confirm() | Release():
            return (command.reservation_id,)
        case ExpireHolds():
            return tuple(command.reservation_ids)
        case Reverse():
            return (command.redemption_id,)
        case StartCampaign():
            return ()
        case GenerateCodes():
            return (
                command.campaign_id,
                *(coupon_id_for(command.retailer_id, code) for code in command.codes),
            )
    raise TypeError(f"no handler for {type(command).__name__}")


def check(command: Command[Any]) -> None:
    """Refuse what is wrong with the command itself, before it is queued (VALIDATION_FAILED)."""
    match command:
        case InTransaction():
            check(command.command)
        case CreateCoupon():
            normalize_code(command.code)
            coupon_fields(command.fields)
        case Redeem():
            check_customer_id(command.customer_id)
        case Reserve():
            if isinstance(command.ttl_seconds, bool) or not 1 <= command.ttl_seconds <= MAX_HOLD_SECONDS:
                raise InvalidCoupon("ttl_seconds", f"must be 1 to {MAX_HOLD_SECONDS} seconds")
            check_customer_id(command.customer_id)


@singledispatch
def decide(command: Command[Any], batch: Batch) -> Any:
    raise TypeError(f"no handler for {type(command).__name__}")


@decide.register
def _in_transaction(command: InTransaction, batch: Batch) -> Any:  # type: ignore[type-arg]
    result = decide(command.command, batch)
    work = command.work
    return batch.then(lambda connection: work(connection, result))


@decide.register
def _create_coupon(command: CreateCoupon, batch: Batch) -> Coupon:
    code = normalize_code(command.code)
    fields = coupon_fields(command.fields)
    if batch.get(coupon_id_for(command.retailer_id, code)) is not None:
        raise CouponCodeTaken(f"Coupon code {code} is already taken.", code=code)
    coupon = Coupon(retailer_id=command.retailer_id, code=code, **fields)
    batch.add(coupon)
    return coupon


@decide.register
def _update_coupon(command: UpdateCoupon, batch: Batch) -> Coupon:
    coupon = coupon_in(batch, command.retailer_id, command.code)
    coupon.update(command.changes)
    return coupon


@decide.register
def _deactivate(command: Deactivate, batch: Batch) -> Coupon:
    coupon = coupon_in(batch, command.retailer_id, command.code)
    if coupon.is_active:
        coupon.deactivate()
    return coupon


@decide.register
def _activate(command: Activate, batch: Batch) -> Coupon:
    coupon = coupon_in(batch, command.retailer_id, command.code)
    coupon.set_active(batch.now, command.expires_at)
    return coupon


@decide.register
def _transition(command: Transition, batch: Batch) -> Coupon:
    coupon = coupon_in(batch, command.retailer_id, command.code)
    coupon.transition(command.event, batch.now, command.expires_at)
    return coupon


@decide.register
def _archive(command: Archive, batch: Batch) -> Coupon:
    coupon = coupon_in(batch, command.retailer_id, command.code)
    coupon.archive()
    return coupon


@decide.register
def _redeem(command: Redeem, batch: Batch) -> Receipt:
    use = UseRequest.of(command)
    if use.keyed_id is not None:
        earlier: Redemption | None = batch.get(use.keyed_id)
        if earlier is not None:
            check_replay(earlier.request_fingerprint, use.fingerprint, command.idempotency_key or command.order_key)
            return Receipt(earlier.id, earlier.quote(), replayed=True)
    coupon, usage, campaign = use.parties(batch)
    redemption_id = use.keyed_id or uuid4()
    quote = coupon.redeem(redemption_id, use.order, batch.now, command.order_id, command.customer_id, usage, campaign)
    batch.add(Redemption(id=redemption_id, **use.recorded(coupon, quote, command.idempotency_key)))
    return Receipt(redemption_id, quote, replayed=False)


@decide.register
def _reserve(command: Reserve, batch: Batch) -> Hold:
    use = UseRequest.of(command, ttl_seconds=command.ttl_seconds)
    keyed_id = reservation_id_for(command.retailer_id, command.idempotency_key) if command.idempotency_key else None
    if keyed_id is not None:
        earlier: Reservation | None = batch.get(keyed_id)
        if earlier is not None:
            check_replay(earlier.request_fingerprint, use.fingerprint, command.idempotency_key)
            return Hold(earlier.id, earlier.quote(), earlier.expires_at, replayed=True)
    now = batch.now
    if command.release is not None:  # first, so that the session's own hold does not count against it
        end_hold(batch, command.retailer_id, command.release, now)
    coupon, usage, campaign = use.parties(batch)
    reservation_id = keyed_id or uuid4()
    expires_at = now + timedelta(seconds=command.ttl_seconds)
    quote = coupon.reserve(reservation_id, use.order, now, expires_at, command.customer_id, usage, campaign)
    recorded = use.recorded(coupon, quote, command.idempotency_key)
    batch.add(Reservation(id=reservation_id, expires_at=expires_at, **recorded))
    return Hold(reservation_id, quote, expires_at, replayed=False)


@decide.register
def _confirm(command: Confirm, batch: Batch) -> Receipt:
    reservation = reservation_in(batch, command.retailer_id, command.reservation_id)
    reservation_id = command.reservation_id
    if reservation.status == RESERVATION_CONFIRMED:
        assert reservation.redemption_id is not None
        return Receipt(reservation.redemption_id, reservation.quote(), replayed=True)
    if reservation.status == RESERVATION_RELEASED:
        raise InvalidTransition(
            f"Reservation {reservation_id} was released: it cannot be confirmed.",
            reservation_id=str(reservation_id),
            status=reservation.status,
            event="confirm",
        )
    now = batch.now
    if reservation.status == RESERVATION_EXPIRED or not reservation.is_live(now):
        raise ReservationExpired(
            f"Reservation {reservation_id} expired at {format_timestamp(reservation.expires_at)}.",
            reservation_id=str(reservation_id),
            expired_at=format_timestamp(reservation.expires_at),
        )
    coupon: Coupon = existing(batch, reservation.coupon_id)
    if coupon.archived:
        raise CouponNotFound(f"Coupon {coupon.code} does not exist.", code=coupon.code)
    usage: CustomerUsage | None = None
    if reservation.customer_id is not None:
        usage = existing(batch, customer_usage_id_for(coupon.id, reservation.customer_id))
    campaign: Campaign | None = None
    if reservation.campaign_id is not None:
        campaign = existing(batch, reservation.campaign_id)
    check_hold_within_limits(coupon, usage, campaign, reservation, now)
    redemption_id = confirmed_redemption_id_for(reservation.id)
    final_order_id = command.order_id if command.order_id is not None else reservation.order_id
    coupon.confirm_hold(reservation, redemption_id, final_order_id)
    if usage is not None:
        usage.use(redemption_id, reservation.id)
    if campaign is not None:
        campaign.use(redemption_id, reservation.discount_amount, reservation.id)
    recorded = use_of(
        command.retailer_id,
        coupon,
        reservation.quote(),
        None,
        reservation.request_fingerprint,
        final_order_id,
        reservation.customer_id,
    )
    batch.add(Redemption(id=redemption_id, **recorded))
    reservation.confirm(redemption_id, command.order_id)
    return Receipt(redemption_id, reservation.quote(), replayed=False)


def check_hold_within_limits(
    coupon: Coupon, usage: CustomerUsage | None, campaign: Campaign | None, reservation: Reservation, now: datetime
) -> None:
    """A hold is confirmed only while the uses and the live holds (itself among them) are within
    every limit: whatever clock judged another hold expired, a confirm never over-redeems."""
    key = str(reservation.id)
    if key not in coupon.holds:
        # The coupon was read after another process ended this hold (its reservation was read
        # before): the save's version check on the reservation decides, and this is decided again.
        return

    def others(holds: Mapping[str, datetime]) -> int:
        return sum(1 for held, expires_at in holds.items() if held != key and now < expires_at)

    if coupon.max_uses is not None and coupon.uses_count + others(coupon.holds) + 1 > coupon.max_uses:
        raise UsageLimitReached(
            f"Coupon {coupon.code} has reached its usage limit of {coupon.max_uses}.",
            max_uses=coupon.max_uses,
            uses=coupon.uses_count,
        )
    limit = coupon.max_uses_per_customer
    if usage is not None and limit is not None and usage.uses + others(usage.holds) + 1 > limit:
        raise CustomerLimitReached(
            f"Customer {usage.customer_id} has used coupon {coupon.code} {usage.uses} time(s), the limit is {limit}.",
            customer_id=usage.customer_id,
            max_uses_per_customer=limit,
            uses=usage.uses,
        )
    if campaign is not None:
        live = [held for held, expires_at in campaign.holds.items() if held != key and now < expires_at]
        count = campaign.redemptions + len(live) + 1
        discount = (
            campaign.discount_total
            + sum((Decimal(campaign.held_discounts[held]) for held in live), ZERO)
            + reservation.discount_amount
        )
        if (campaign.max_redemptions is not None and count > campaign.max_redemptions) or (
            campaign.max_discount_total is not None and discount > campaign.max_discount_total
        ):
            raise CampaignBudgetExhausted(
                f"Campaign {campaign.name} has no budget left for this hold.",
                campaign_id=str(campaign.id),
                redemptions=campaign.redemptions,
                discount_total=format_amount(campaign.discount_total),
            )


@decide.register
def _release(command: Release, batch: Batch) -> HoldEnded:
    reservation = reservation_in(batch, command.retailer_id, command.reservation_id)
    if reservation.status == RESERVATION_CONFIRMED:
        raise InvalidTransition(
            f"Reservation {command.reservation_id} was confirmed: reverse its redemption to give the use back.",
            reservation_id=str(command.reservation_id),
            status=reservation.status,
            event="release",
            redemption_id=str(reservation.redemption_id),
        )
    already = reservation.status != RESERVATION_HELD
    if not already:
        end_hold(batch, command.retailer_id, command.reservation_id, batch.now)
    return HoldEnded(reservation, reservation.status, already)


@decide.register
def _expire_holds(command: ExpireHolds, batch: Batch) -> int:
    now = batch.now
    due = [r for r in map(batch.get, command.reservation_ids) if isinstance(r, Reservation) and r.is_past_ttl(now)]
    # Their coupons, customer usages and campaigns in one query rather than one each.
    batch.prefetch(
        aggregate_id
        for r in due
        for aggregate_id in (
            r.coupon_id,
            customer_usage_id_for(r.coupon_id, r.customer_id) if r.customer_id is not None else None,
            r.campaign_id,
        )
        if aggregate_id is not None
    )
    for reservation in due:
        end_hold(batch, reservation.retailer_id, reservation.id, now)
    return len(due)


@decide.register
def _reverse(command: Reverse, batch: Batch) -> Reversal:
    redemption = batch.get(command.redemption_id)
    if not isinstance(redemption, Redemption) or redemption.retailer_id != command.retailer_id:
        raise RedemptionNotFound(
            f"Redemption {command.redemption_id} does not exist.", redemption_id=str(command.redemption_id)
        )
    if redemption.is_reversed:
        return Reversal(redemption, already_reversed=True)
    coupon: Coupon = existing(batch, redemption.coupon_id)
    coupon.reverse_redemption(redemption.id, redemption.discount_amount, command.reason)
    if redemption.customer_id is not None:
        usage: CustomerUsage = existing(batch, customer_usage_id_for(coupon.id, redemption.customer_id))
        usage.give_back(redemption.id)
    if redemption.campaign_id is not None:
        campaign: Campaign = existing(batch, redemption.campaign_id)
        campaign.give_back(redemption.id, redemption.discount_amount)
    redemption.reverse(command.reason, batch.now)
    return Reversal(redemption, already_reversed=False)


@decide.register
def _start_campaign(command: StartCampaign, batch: Batch) -> Campaign:
    campaign = Campaign(
        id=command.campaign_id,
        retailer_id=command.retailer_id,
        name=command.name,
        prefix=command.prefix,
        count=command.count,
        template=dict(command.template),
        max_redemptions=command.max_redemptions,
        max_discount_total=command.max_discount_total,
    )
    batch.add(campaign)
    return campaign


@decide.register
def _generate_codes(command: GenerateCodes, batch: Batch) -> Campaign:
    campaign: Campaign | None = batch.get(command.campaign_id)
    if campaign is None:
        raise LookupError(f"campaign {command.campaign_id} is missing from the store")
    for drawn in command.codes:
        code, coupon_id = drawn, coupon_id_for(command.retailer_id, drawn)
        while batch.get(coupon_id) is not None:  # taken: draw another
            code = command.draw()
            coupon_id = coupon_id_for(command.retailer_id, code)
        batch.add(
            Coupon(retailer_id=command.retailer_id, code=code, campaign_id=command.campaign_id, **command.template)
        )
    campaign.codes_generated(len(command.codes))
    return campaign


# --- shared by the handlers ---------------------------------------------------------------------


def coupon_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A new coupon's fields (all of them, defaults filled in), checked."""
    unknown = set(fields) - COUPON_FIELDS.keys()
    if unknown:
        raise TypeError(f"unknown coupon fields: {', '.join(sorted(unknown))}")
    checked = {**COUPON_FIELDS, **fields}
    if checked["discount_type"] == FREE_SHIPPING and checked["discount_value"] is None:
        checked["discount_value"] = ZERO
    check_discount(checked["discount_type"], checked["discount_value"])
    check_terms(checked, checked["discount_type"])
    scope = Scope.of(checked["scope"])
    checked["scope"] = scope.as_dict() if scope is not None else None
    return checked


def end_hold(batch: Batch, retailer_id: UUID, reservation_id: UUID, now: datetime) -> None:
    """End a hold that is still held: released if live, recorded as expired if past its time; on
    the reservation, its coupon, the customer's usage and the campaign. Nothing for a hold that is
    not held any more, or not this retailer's."""
    reservation = batch.get(reservation_id)
    if not isinstance(reservation, Reservation) or reservation.retailer_id != retailer_id:
        return
    if reservation.status != RESERVATION_HELD:
        return
    expired = reservation.is_past_ttl(now)
    coupon: Coupon = existing(batch, reservation.coupon_id)
    usage: CustomerUsage | None = None
    if reservation.customer_id is not None:
        usage = existing(batch, customer_usage_id_for(coupon.id, reservation.customer_id))
    campaign: Campaign | None = None
    if reservation.campaign_id is not None:
        campaign = existing(batch, reservation.campaign_id)
    if expired:
        coupon.expire_hold(reservation_id)
        if usage is not None:
            usage.expire_hold(reservation_id)
        if campaign is not None:
            campaign.expire_hold(reservation_id)
        reservation.expire()
    else:
        coupon.release_hold(reservation_id)
        if usage is not None:
            usage.release_hold(reservation_id)
        if campaign is not None:
            campaign.release_hold(reservation_id)
        reservation.release()


def existing(batch: Batch, aggregate_id: UUID) -> Any:
    """An aggregate the store must hold (one a redemption names)."""
    aggregate = batch.get(aggregate_id)
    if aggregate is None:
        raise LookupError(f"aggregate {aggregate_id} is missing from the store")
    return aggregate


def coupon_in(batch: Batch, retailer_id: UUID, code: str) -> Coupon:
    normalized = lookup_code(code)
    coupon: Coupon | None = batch.get(coupon_id_for(retailer_id, normalized))
    if coupon is None or coupon.archived:
        raise CouponNotFound(f"Coupon {normalized} does not exist.", code=normalized)
    return coupon


def lookup_code(code: str) -> str:
    try:
        return normalize_code(code)
    except InvalidCoupon:
        raise CouponNotFound(f"Coupon {ascii_upper(code)} does not exist.", code=code) from None


def reservation_in(batch: Batch, retailer_id: UUID, reservation_id: UUID) -> Reservation:
    reservation = batch.get(reservation_id)
    if not isinstance(reservation, Reservation) or reservation.retailer_id != retailer_id:
        raise reservation_not_found(reservation_id)
    return reservation


def reservation_not_found(reservation_id: UUID) -> ReservationNotFound:
    return ReservationNotFound(f"Reservation {reservation_id} does not exist.", reservation_id=str(reservation_id))
