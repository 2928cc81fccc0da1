"""CouponLedger: the application service. A command (ledger/commands.py, a value) goes in; the
process's one BatchWriter (ledger/writer.py) decides it with its handler (ledger/handlers.py)
against a whole batch and saves the batch at once; the answer of the attempt that committed comes out.

Concurrency is optimistic: every event carries the aggregate's next version and the store's
primary key (originator_id, originator_version) admits only one writer of each version. Inside a
process the writer decides commands one after another, so they never race; a save that loses to
another process is re-read, re-checked and saved again by the writer, so a coupon can never be
redeemed past its limit, whatever runs in parallel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import DomainEvent, DomainEventProtocol, MutableOrImmutableAggregate
from eventsourcing.persistence import Recording, Transcoder

from ledger.clock import DatabaseClock, postgres_now
from ledger.commands import Command, InTransaction
from ledger.domain import (
    Campaign,
    Coupon,
    CustomerUsage,
    Item,
    Quote,
    Redemption,
    Reservation,
    check_customer_id,
    coupon_id_for,
    customer_usage_id_for,
)
from ledger.domain import Order as PricedOrder
from ledger.errors import CampaignNotFound, CouponNotFound, RedemptionNotFound
from ledger.event_store import LedgerRecorder
from ledger.handlers import check, created, decide, lookup_code, needs, reservation_not_found
from ledger.hash_chain import HashChain
from ledger.served_events import ZERO_HASH, event_hash, served_event
from ledger.state_then import CouponThen, StateThen
from ledger.transcoder import LedgerTranscoder
from ledger.writer import BatchWriter

SNAPSHOT_INTERVAL = 100  # measured with bench/capacity.py: see README, Performance
A = TypeVar("A")
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def locks_of(command: Command[Any]) -> tuple[Any, ...]:
    return tuple(command.locks) if isinstance(command, InTransaction) else ()


@dataclass(frozen=True)
class RecordedEvent:
    """An event as served (ledger/served_events.py): version, type, occurred_at (UTC, Z), data
    (JSON values), and its links in its stream's hash chain as stored."""

    version: int
    type: str
    occurred_at: str
    data: dict[str, Any]
    prev_hash: str
    hash: str


class CouponLedger(Application[UUID]):
    name = "Ledger"
    env = {"AGGREGATE_CACHE_MAXSIZE": "10000"}
    snapshotting_intervals = {Coupon: SNAPSHOT_INTERVAL, CustomerUsage: SNAPSHOT_INTERVAL, Campaign: SNAPSHOT_INTERVAL}

    def __init__(self, env: dict[str, str] | None = None, clock: Callable[[], datetime] | None = None) -> None:
        """``clock``: the time that decides (holds, windows); by default the database's on
        PostgreSQL (every process reads the same), else this process's."""
        super().__init__(env)
        if clock is None:
            recorder = self.recorder
            clock = (
                DatabaseClock(postgres_now(recorder.datastore.pool)) if isinstance(recorder, LedgerRecorder) else utcnow
            )
        self.clock = clock
        # Links every event to the one before it in its stream as it is saved (PostgreSQL only).
        self.hash_chain = None
        if isinstance(self.recorder, LedgerRecorder):
            chain = self.hash_chain = HashChain(self.recorder)
            self.recorder.linker = lambda stored: chain.links([self.mapper.to_domain_event(s) for s in stored])
        self.writer = BatchWriter(
            self, cached_types=(Coupon, CustomerUsage, Campaign, Reservation), clock=lambda: self.clock()
        )
        self.state_then = StateThen(self, lambda: self.clock())

    def construct_transcoder(self) -> Transcoder:
        transcoder = LedgerTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def save(
        self, *objs: MutableOrImmutableAggregate[UUID] | DomainEventProtocol[UUID] | None, **kwargs: Any
    ) -> list[Recording[UUID]]:
        """The library's save(), telling events from aggregates by class: its check of every
        object against a runtime protocol cost more CPU than writing the event. On PostgreSQL
        each event is saved with its link in its stream's hash chain."""
        processing_event = ProcessingEvent[UUID]()
        for obj in objs:
            if isinstance(obj, DomainEvent):
                processing_event.events.append(obj)
            elif obj is not None:
                processing_event.collect_events(obj)
        processing_event.saved_kwargs.update(kwargs)
        links = None
        if self.hash_chain is not None and processing_event.events:
            links = self.hash_chain.links(processing_event.events)
            processing_event.saved_kwargs["links"] = links
        recordings = self._record(processing_event)
        if links is not None:
            self.hash_chain.committed(links)  # type: ignore[union-attr]
        self._take_snapshots(processing_event)
        self._notify(recordings)
        return recordings

    @property
    def version_conflicts(self) -> int:
        """Saves the store rejected because another process wrote the same aggregate first."""
        return self.writer.stats.conflicts

    def close(self) -> None:
        self.writer.close()
        super().close()

    # --- commands: each is decided by the writer against the batch's aggregates ------------------

    def execute(self, command: Command[T], background: bool = False) -> T:
        """Decide and save ``command`` with the writer's next batch; answer what the attempt that
        committed produced, or raise its refusal. Blocks (CLI, tests, threads). ``background``:
        bulk work, written only when no live command waits (see ledger/writer.py)."""
        check(command)
        return self.writer.execute(
            needs(command), partial(decide, command), locks_of(command), background, created(command)
        )

    async def execute_async(self, command: Command[T], background: bool = False) -> T:
        """The same, awaited (the HTTP API): no thread is held while the batch is written."""
        check(command)
        return await self.writer.execute_async(
            needs(command), partial(decide, command), locks_of(command), background, created(command)
        )

    # --- queries: read the store directly -------------------------------------------------------

    def get_coupon(self, retailer_id: UUID, code: str, archived: bool = False) -> Coupon:
        """The coupon; COUPON_NOT_FOUND if it does not exist or (unless ``archived``) was archived."""
        code = lookup_code(code)
        coupon = self._get(coupon_id_for(retailer_id, code), Coupon)
        if coupon is None or (coupon.archived and not archived):
            raise CouponNotFound(f"Coupon {code} does not exist.", code=code)
        return coupon

    def coupon_after_version(self, retailer_id: UUID, code: str, version: int) -> CouponThen:
        """The coupon as it was after its event ``version``, from its events (ledger/state_then.py)."""
        return self.state_then.after_version(retailer_id, code, version)

    def coupon_at(self, retailer_id: UUID, code: str, moment: datetime) -> CouponThen:
        """The coupon as it was at ``moment``, from its events (ledger/state_then.py)."""
        return self.state_then.at(retailer_id, code, moment)

    def validate(
        self,
        retailer_id: UUID,
        code: str,
        subtotal: Decimal | None,
        items: Sequence[Item] | None = None,
        shipping_amount: Decimal | None = None,
        customer_id: str | None = None,
    ) -> Quote:
        """Price an order as apply would, consuming nothing."""
        return self.validate_with_coupon(retailer_id, code, subtotal, items, shipping_amount, customer_id)[0]

    def validate_with_coupon(
        self,
        retailer_id: UUID,
        code: str,
        subtotal: Decimal | None,
        items: Sequence[Item] | None = None,
        shipping_amount: Decimal | None = None,
        customer_id: str | None = None,
    ) -> tuple[Quote, Coupon]:
        """``validate``, and the coupon it priced the order with (for what the quote does not say,
        such as its discount type), read once."""
        order = PricedOrder.of(subtotal, items, shipping_amount)
        check_customer_id(customer_id)
        coupon = self.get_coupon(retailer_id, code)
        usage = self._get(customer_usage_id_for(coupon.id, customer_id), CustomerUsage) if customer_id else None
        campaign = self._get(coupon.campaign_id, Campaign) if coupon.campaign_id is not None else None
        return coupon.quote(order, self.clock(), customer_id, usage, campaign), coupon

    def get_campaign(self, retailer_id: UUID, campaign_id: UUID) -> Campaign:
        campaign = self._get(campaign_id, Campaign)
        if campaign is None or campaign.retailer_id != retailer_id:
            raise CampaignNotFound(f"Campaign {campaign_id} does not exist.", campaign_id=str(campaign_id))
        return campaign

    def get_redemption(self, retailer_id: UUID, redemption_id: UUID) -> Redemption:
        redemption = self._get(redemption_id, Redemption)
        if redemption is None or redemption.retailer_id != retailer_id:
            raise RedemptionNotFound(f"Redemption {redemption_id} does not exist.", redemption_id=str(redemption_id))
        return redemption

    def get_reservation(self, retailer_id: UUID, reservation_id: UUID) -> Reservation:
        reservation = self._get(reservation_id, Reservation)
        if reservation is None or reservation.retailer_id != retailer_id:
            raise reservation_not_found(reservation_id)
        return reservation

    def _get(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        """The aggregate with this id if it is one of ``kind``; else None."""
        try:
            aggregate: object = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate if isinstance(aggregate, kind) else None

    def coupon_events(
        self,
        retailer_id: UUID,
        code: str,
        after_version: int = 0,
        limit: int = 100,
        recorder: LedgerRecorder | None = None,
    ) -> list[RecordedEvent]:
        """A coupon's events (archived coupons' too: their history is kept), as served, with the
        hashes stored when each was written. The coupon is looked up in this ledger; its events
        are read through ``recorder`` (default: the ledger's own; a replica's copy of the same log)."""
        coupon_id = self.get_coupon(retailer_id, code, archived=True).id
        return self.stream_events(coupon_id, after_version, limit, recorder)

    def stream_events(
        self, stream: UUID, after_version: int = 0, limit: int = 100, recorder: LedgerRecorder | None = None
    ) -> list[RecordedEvent]:
        """A stream's events after ``after_version``, as served with their stored hashes, read
        through ``recorder`` (default: the ledger's own)."""
        store = recorder or self.recorder
        if not isinstance(store, LedgerRecorder):
            # The in-memory store of the unit tests keeps no hashes: link what it holds on reading.
            chained, prev = [], ZERO_HASH
            for event in self.events.get(stream, lte=after_version + limit):
                served = served_event(event)
                chained.append(RecordedEvent(**served, prev_hash=prev, hash=(prev := event_hash(prev, served))))
            return chained[after_version:]
        return [
            RecordedEvent(**served_event(self.mapper.to_domain_event(stored)), prev_hash=prev_hash, hash=hash_)
            for stored, prev_hash, hash_ in store.select_chained(stream, after_version, limit)
        ]
