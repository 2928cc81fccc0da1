"""Bulk work in the writer's background lane: a campaign's chunks never hold up live commands for
more than the chunk being written. Each test holds the writer on a first command until the rest
have queued, so the order the writer takes them in is fixed, not timed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from decimal import Decimal
from typing import Any
from uuid import UUID

from ledger.application import CouponLedger
from ledger.batch import Batch
from ledger.campaigns import CampaignPlan
from ledger.commands import GenerateCodes
from ledger.domain import FIXED
from ledger.handlers import decide

RETAILER = UUID("00000000-0000-4000-8000-00000000000b")
TEMPLATE = {"discount_type": FIXED, "discount_value": Decimal("5"), "max_uses": 1}


class Order:
    """Names the commands in the order the writer decides them."""

    def __init__(self) -> None:
        self.decided: list[str] = []

    def noting(self, name: str, decide: Callable[[Batch], Any]) -> Callable[[Batch], Any]:
        def noted(batch: Batch) -> Any:
            self.decided.append(name)
            return decide(batch)

        return noted


def hold_writer(ledger: CouponLedger, order: Order, background: bool) -> tuple[threading.Event, Future[Any]]:
    release, started = threading.Event(), threading.Event()

    def wait(_: Batch) -> None:
        started.set()
        assert release.wait(10)

    held = ledger.writer.submit((), order.noting("held", wait), background=background)
    assert started.wait(10)
    return release, held


def test_a_live_command_queued_behind_campaign_chunks_is_written_before_the_remaining_chunks(
    ledger: CouponLedger,
) -> None:
    order = Order()
    plan = CampaignPlan(RETAILER, "Spring", "SPRING-", 30, TEMPLATE, chunk=10)
    start, *chunks = plan.commands()
    ledger.execute(start)
    release, first_chunk = hold_writer(ledger, order, background=True)  # a chunk being written
    queued = [
        ledger.writer.submit(
            (command.campaign_id,),
            order.noting(f"chunk {n}", lambda batch, c=command: generate(c, batch)),
            background=True,
        )
        for n, command in enumerate(chunks, 1)
        if isinstance(command, GenerateCodes)
    ]
    live = ledger.writer.submit((), order.noting("live", lambda _: "answered"))

    release.set()
    first_chunk.result(10)
    assert live.result(10) == "answered"
    for future in queued:
        future.result(10)

    assert order.decided == ["held", "live", "chunk 1", "chunk 2", "chunk 3"]
    assert ledger.get_campaign(RETAILER, plan.campaign_id).generated == 30


def test_background_commands_are_written_one_per_batch(ledger: CouponLedger) -> None:
    order = Order()
    release, held = hold_writer(ledger, order, background=False)
    batches = ledger.writer.stats.batches
    queued = [ledger.writer.submit((), order.noting(f"bulk {n}", lambda _: None), background=True) for n in range(1, 4)]
    release.set()
    held.result(10)
    for future in queued:
        future.result(10)

    assert order.decided == ["held", "bulk 1", "bulk 2", "bulk 3"]
    assert ledger.writer.stats.batches - batches == 4  # the held batch, then one per background command


def test_background_work_still_moves_while_live_commands_keep_arriving(ledger: CouponLedger) -> None:
    order = Order()
    ledger.writer.background_every = 2
    release, held = hold_writer(ledger, order, background=False)
    bulk = ledger.writer.submit((), order.noting("bulk", lambda _: None), background=True)

    # Each live command queues the next one while it is decided: the live lane is never empty.
    def chain(n: int) -> Callable[[Batch], Any]:
        def decide(_: Batch) -> None:
            if n < 5:
                ledger.writer.submit((), order.noting(f"live {n + 1}", chain(n + 1)))

        return decide

    ledger.writer.submit((), order.noting("live 1", chain(1)))
    release.set()
    held.result(10)
    bulk.result(10)

    # Passed over by two batches, the bulk command joins the third.
    assert order.decided[:5] == ["held", "live 1", "live 2", "live 3", "bulk"]


def generate(command: GenerateCodes, batch: Batch) -> Any:
    return decide(command, batch)
