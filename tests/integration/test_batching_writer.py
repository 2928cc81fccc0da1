"""The batching writer on PostgreSQL: one batch, one read, one save; every caller gets its own answer.

Nothing here depends on timing. A batch is made certain by holding the writer thread with a
command of the test's own (its ``decide`` waits on an event) while the commands under test queue
up: released, the writer takes all of them at once. A write by another process is made to land
between the writer's read and its save by wrapping the ledger's ``save``. A server is killed while
its writer is provably inside a save, blocked on the events table's lock that the test holds.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest

from api.database import eventsourcing_env
from ledger.application import CouponLedger
from ledger.batch import Batch
from ledger.commands import InTransaction, Receipt, Redeem
from ledger.domain import Coupon, Order, Redemption, redemption_id_for
from ledger.errors import LedgerError
from projections.coupons import construct_view
from projections.verify import verify
from tests.support.commands import apply, deactivate, planned, redeem
from tests.support.commands import create_coupon as new_coupon
from tests.support.postgres import (
    RECORDED_TOPIC,
    Server,
    auth,
    cluster,
    create_coupon,
    head,
    ledger_with_clock,
    project_to_head,
    race,
    recorded_redemptions,
    redeemed_events,
    run_cli,
    scalar,
    tracking_position,
    uses_count,
    wait_for,
)

SUBTOTAL = Decimal("100.00")
Command = tuple[tuple[UUID, ...], Callable[[Batch], Any]]


# --- tools ------------------------------------------------------------------------------------------


def open_test_ledger(url: str, pool_size: int = 4, max_overflow: int = 12) -> CouponLedger:
    return ledger_with_clock(eventsourcing_env(url, pool_size, max_overflow), partial(datetime.now, UTC))


@contextmanager
def held_writer(ledger: CouponLedger) -> Iterator[None]:
    """Occupy the ledger's writer thread with a command of the test's own until the block ends.

    The hold command's batch has been taken before this yields, so every command submitted inside
    the block waits in the queue, and the writer takes all of them together as its next batch.
    """
    entered = threading.Event()
    released = threading.Event()

    def hold(batch: Batch) -> str:
        entered.set()
        if not released.wait(120):
            raise TimeoutError("the test never released the writer")
        return "held"

    future = ledger.writer.submit((), hold)
    assert entered.wait(30), "the writer did not take the hold command"
    try:
        yield
    finally:
        released.set()
        assert future.result(30) == "held"


class QueuedCommands:
    """Counts the commands submitted to a ledger's writer (``ledger.apply`` submits through it)."""

    def __init__(self, ledger: CouponLedger, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self._changed = threading.Condition()
        submit = ledger.writer.submit

        def counting_submit(
            needs: Any, decide: Any, locks: Any = (), background: bool = False, created: Any = ()
        ) -> Future[Any]:
            future = submit(needs, decide, locks, background, created)
            with self._changed:
                self.count += 1
                self._changed.notify_all()
            return future

        monkeypatch.setattr(ledger.writer, "submit", counting_submit)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.count >= count, timeout), f"{self.count} of {count} queued"


def log_of(url: str, aggregate_id: UUID) -> list[tuple[int, str]]:
    """(version, event type) of every stored event of one aggregate, read with plain SQL."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT originator_version, topic FROM ledger_events WHERE originator_id = %s ORDER BY originator_version",
            (aggregate_id,),
        ).fetchall()
    return [(int(version), str(topic).rsplit(":", 1)[-1]) for version, topic in rows]


def recorded_ids(url: str) -> set[UUID]:
    """Ids of every Redemption aggregate in the log."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT originator_id FROM ledger_events WHERE topic LIKE %s", (RECORDED_TOPIC,)).fetchall()
    return {row[0] for row in rows}


def redeemed_on_coupon(url: str, coupon_id: UUID) -> list[Coupon.Redeemed]:
    """The coupon's Redeemed events, decoded by a ledger of the test's own."""
    reader = open_test_ledger(url, pool_size=1, max_overflow=0)
    try:
        return [e for e in reader.events.get(coupon_id) if isinstance(e, Coupon.Redeemed)]
    finally:
        reader.close()


def error_code(result: object) -> str:
    if isinstance(result, Receipt):
        return "REDEEMED"
    if isinstance(result, LedgerError):
        return result.code
    return repr(result)


def answer(future: Future[Any]) -> object:
    """The future's result, or the exception it was answered with."""
    try:
        return future.result(120)
    except Exception as error:
        return error


def caught_up_uses(url: str, coupon_id: UUID, timeout: float = 30.0) -> int | None:
    """The read model's uses_count once its tracking position has reached the head of the log."""
    target = head(url)
    wait_for(lambda: tracking_position(url) >= target, timeout, message=f"the projection to reach {target}")
    return uses_count(url, coupon_id)


def assert_verified(url: str) -> None:
    verified = run_cli(url, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "VIOLATION" not in verified.stdout


# --- HTTP ---------------------------------------------------------------------------------------------


def create_retailer(url: str) -> tuple[UUID, str]:
    created = run_cli(url, "retailer", "create", "Batching Shop")
    assert created.returncode == 0, created.stderr
    retailer: dict[str, str] = json.loads(created.stdout.strip().splitlines()[-1])
    return UUID(retailer["retailer_id"]), retailer["api_key"]


@contextmanager
def http_client(connections: int) -> Iterator[httpx.Client]:
    """One client shared by the test's threads (a client per request costs ~40 ms of CPU in TLS setup alone)."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    with httpx.Client(timeout=60, limits=limits) as client:
        yield client


def apply_body(code: str, key: str) -> dict[str, str]:
    return {"code": code, "subtotal": str(SUBTOTAL), "order_id": key}


def apply_over_http(client: httpx.Client, server: Server, api_key: str, code: str, key: str) -> httpx.Response:
    return client.post(
        f"{server.base_url}/v1/coupons/apply",
        json=apply_body(code, key),
        headers={**auth(api_key), "Idempotency-Key": key},
    )


def send_apply_without_reading(server: Server, api_key: str, code: str, key: str) -> socket.socket:
    """Send an apply on a raw socket and never read the answer: a response lost on its way back."""
    body = json.dumps(apply_body(code, key)).encode()
    request = (
        f"POST /v1/coupons/apply HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {api_key}\r\n"
        f"Idempotency-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(request + body)
    return sock


def http_outcome(response: httpx.Response) -> str:
    if response.status_code == 201:
        return "REDEEMED"
    code = response.json().get("error", {}).get("code")
    return code if response.status_code == 422 and code == "USAGE_LIMIT_REACHED" else f"{response.status_code} {code}"


# --- 1. processes and threads on one hot coupon ------------------------------------------------------

HOT_MAX_USES = 50
HTTP_APPLIES = 150
DIRECT_APPLIES = 50


@pytest.mark.slow
def test_two_batching_servers_and_direct_threads_racing_a_fifty_use_coupon_redeem_it_exactly_fifty_times(
    database_url: str, tmp_path: Path, open_ledgers: list[CouponLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    retailer_id, api_key = create_retailer(database_url)
    direct = open_test_ledger(database_url)  # a third process, in the test
    open_ledgers.append(direct)
    queued = QueuedCommands(direct, monkeypatch)

    # The direct ledger's batch reads the coupon before any server has redeemed it, and saves only
    # after a server has: its first save is certain to lose a version race to another process.
    read = threading.Event()
    real_save = direct.save

    def save_once_a_server_has_redeemed(*objs: Any, **kwargs: Any) -> Any:
        if not read.is_set():
            read.set()
            wait_for(lambda: redeemed_events(database_url) > 0, 60, interval=0.005, message="a server's redemption")
        return real_save(*objs, **kwargs)

    monkeypatch.setattr(direct, "save", save_once_a_server_has_redeemed)

    with ExitStack() as stack:
        running = stack.enter_context(cluster(database_url, tmp_path))
        client = stack.enter_context(http_client(HTTP_APPLIES))
        pool = stack.enter_context(ThreadPoolExecutor(DIRECT_APPLIES))
        servers = running.start(2)
        coupon_id = UUID(create_coupon(servers[0], api_key, "HOT50", HOT_MAX_USES)["id"])
        batches_before = direct.writer.stats.batches

        with held_writer(direct):
            direct_calls = [
                pool.submit(apply, direct, retailer_id, "hot50", SUBTOTAL, f"direct-{i}", f"direct-{i}")
                for i in range(DIRECT_APPLIES)
            ]
            queued.wait_for(DIRECT_APPLIES + 1)  # and the hold command
        assert read.wait(60), "the direct batch never reached its save"
        http_results = race(
            [
                partial(apply_over_http, client, servers[i % 2], api_key, "HOT50", f"http-{i}")
                for i in range(HTTP_APPLIES)
            ]
        )
        direct_results = [answer(call) for call in direct_calls]

        assert all(isinstance(r, httpx.Response) for r in http_results), http_results
        http_responses = [r for r in http_results if isinstance(r, httpx.Response)]
        outcomes = Counter(map(http_outcome, http_responses)) + Counter(map(error_code, direct_results))
        total = HTTP_APPLIES + DIRECT_APPLIES
        assert outcomes == {"REDEEMED": HOT_MAX_USES, "USAGE_LIMIT_REACHED": total - HOT_MAX_USES}
        # The fifty direct commands were one batch; it lost at least one race to a server process.
        assert direct.writer.stats.batches - batches_before == 2
        assert direct.version_conflicts >= 1

        receipt_ids = [UUID(r.json()["redemption_id"]) for r in http_responses if r.status_code == 201]
        receipt_ids += [r.redemption_id for r in direct_results if isinstance(r, Receipt)]
        redeemed = redeemed_on_coupon(database_url, coupon_id)
        assert len(redeemed) == redeemed_events(database_url) == recorded_redemptions(database_url) == HOT_MAX_USES
        assert sorted(e.redemption_id for e in redeemed) == sorted(receipt_ids)
        assert [v for v, _ in log_of(database_url, coupon_id)] == list(range(1, HOT_MAX_USES + 2))

        assert caught_up_uses(database_url, coupon_id) == HOT_MAX_USES
        assert_verified(database_url)


# --- 2. one batch, every kind of answer, one conflict with another process --------------------------


class Decisions:
    """Submits commands to a ledger's writer and notes every decision each of them gets."""

    def __init__(self, ledger: CouponLedger) -> None:
        self.ledger = ledger
        self.made: dict[str, list[object]] = {}
        self.futures: dict[str, Future[Any]] = {}

    def submit(self, name: str, command: Command) -> None:
        needs, decide = command
        made = self.made.setdefault(name, [])

        def noted(batch: Batch) -> Any:
            try:
                result = decide(batch)
            except Exception as error:
                made.append(error)
                raise
            made.append(result)
            return result

        self.futures[name] = self.ledger.writer.submit(needs, noted)

    def answers(self) -> dict[str, object]:
        return {name: answer(future) for name, future in self.futures.items()}


def test_one_batch_mixing_every_kind_of_answer_gives_each_caller_its_own_and_redecides_only_the_raced_coupons(
    database_url: str, open_ledgers: list[CouponLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = open_test_ledger(database_url)
    other_process = open_test_ledger(database_url)
    open_ledgers.extend([ledger, other_process])
    retailer = UUID("00000000-0000-4000-8000-0000000000aa")
    a = new_coupon(ledger, retailer, "ALPHA", "percentage", Decimal("10"), min_order_value=Decimal("50"))
    b = new_coupon(ledger, retailer, "BRAVO", "fixed", Decimal("5"))
    deactivate(ledger, retailer, "BRAVO")
    c = new_coupon(ledger, retailer, "CHARLIE", "fixed", Decimal("5"), max_uses=5)
    e = new_coupon(ledger, retailer, "ECHO", "fixed", Decimal("5"), max_uses=1)
    f = new_coupon(ledger, retailer, "FOXTROT", "fixed", Decimal("5"))
    early = apply(ledger, retailer, "ALPHA", SUBTOTAL, idempotency_key="early")

    # Another process writes C, E and F after the writer has read them and before it saves (the save
    # of the batch under test is the first since this patch): it takes one use of C, the only use of
    # E, and records on F the key the batch uses there. The store then rejects the batch's save.
    real_save = ledger.save
    saves: list[str] = []
    raced: dict[str, Receipt] = {}

    def save_after_another_process_wrote(*objs: Any, **kwargs: Any) -> Any:
        if not saves:
            raced["C"] = apply(other_process, retailer, "CHARLIE", SUBTOTAL)
            raced["E"] = apply(other_process, retailer, "ECHO", SUBTOTAL)
            raced["F"] = apply(other_process, retailer, "FOXTROT", SUBTOTAL, idempotency_key="shared")
        try:
            recordings = real_save(*objs, **kwargs)
        except Exception as error:
            saves.append(type(error).__name__)
            raise
        saves.append("saved")
        return recordings

    monkeypatch.setattr(ledger, "save", save_after_another_process_wrote)
    stats = ledger.writer.stats
    before = (stats.batches, stats.commands, stats.events, stats.reads, stats.conflicts)

    decisions = Decisions(ledger)
    with held_writer(ledger):
        submit = decisions.submit
        submit("a-fresh", redeem(retailer, "ALPHA", SUBTOTAL, None))
        submit("a-below-minimum", redeem(retailer, "ALPHA", Decimal("20.00"), None))
        submit("b-inactive", redeem(retailer, "bravo", SUBTOTAL, None))
        submit("early-replayed", redeem(retailer, "ALPHA", SUBTOTAL, "early"))
        submit("twice-first", redeem(retailer, "ALPHA", SUBTOTAL, "twice"))
        submit("twice-second", redeem(retailer, "alpha ", SUBTOTAL, "twice"))
        submit("clash-first", redeem(retailer, "ALPHA", SUBTOTAL, "clash"))
        submit("clash-second", redeem(retailer, "ALPHA", Decimal("120.00"), "clash"))
        submit("unknown", redeem(retailer, "NOPE", SUBTOTAL, None))
        submit("not-a-code", redeem(retailer, "no!", SUBTOTAL, None))
        submit("c-raced", redeem(retailer, "CHARLIE", SUBTOTAL, None))
        submit("e-last-use-taken", redeem(retailer, "ECHO", SUBTOTAL, "e-key"))
        submit("e-key-again", redeem(retailer, "ECHO", SUBTOTAL, "e-key"))
        submit("f-key-taken", redeem(retailer, "FOXTROT", SUBTOTAL, "shared"))
        submit("a-late", redeem(retailer, "ALPHA", SUBTOTAL, None))
    answers = decisions.answers()

    # One batch for the hold command, one for all fifteen; one read, one rejected save, one re-read.
    after = (stats.batches, stats.commands, stats.events, stats.reads, stats.conflicts)
    assert [n - m for n, m in zip(after, before, strict=True)] == [2, 16, 10, 2, 1]
    assert saves == ["IntegrityError", "saved"]
    assert ledger.version_conflicts == 1 and other_process.version_conflicts == 0

    assert {name: error_code(result) for name, result in answers.items()} == {
        "a-fresh": "REDEEMED",
        "a-below-minimum": "MIN_ORDER_NOT_MET",
        "b-inactive": "COUPON_INACTIVE",
        "early-replayed": "REDEEMED",
        "twice-first": "REDEEMED",
        "twice-second": "REDEEMED",
        "clash-first": "REDEEMED",
        "clash-second": "IDEMPOTENCY_KEY_REUSED",
        "unknown": "COUPON_NOT_FOUND",
        "not-a-code": "COUPON_NOT_FOUND",
        "c-raced": "REDEEMED",
        "e-last-use-taken": "USAGE_LIMIT_REACHED",
        "e-key-again": "USAGE_LIMIT_REACHED",
        "f-key-taken": "REDEEMED",
        "a-late": "REDEEMED",
    }
    receipts = {name: result for name, result in answers.items() if isinstance(result, Receipt)}
    assert {name for name, r in receipts.items() if r.replayed} == {"early-replayed", "twice-second", "f-key-taken"}
    assert receipts["early-replayed"].redemption_id == early.redemption_id
    assert receipts["early-replayed"].quote == early.quote
    assert receipts["twice-second"].redemption_id == receipts["twice-first"].redemption_id
    assert receipts["twice-first"].redemption_id == redemption_id_for(retailer, "twice")
    assert receipts["f-key-taken"].redemption_id == raced["F"].redemption_id == redemption_id_for(retailer, "shared")

    # Only the commands on the coupons the other process moved were decided again; the second
    # decision of C is a new redemption, and that is the one its caller got and the log holds.
    redecided = {name for name, made in decisions.made.items() if len(made) > 1}
    assert redecided == {"c-raced", "e-last-use-taken", "e-key-again", "f-key-taken"}
    assert all(len(made) == 1 for name, made in decisions.made.items() if name not in redecided)
    assert all(len(made) == 2 for name, made in decisions.made.items() if name in redecided)
    assert [error_code(d) for d in decisions.made["e-last-use-taken"]] == ["REDEEMED", "USAGE_LIMIT_REACHED"]
    # Its key's replay was built on the first decision, so it is decided again too (not a replay of
    # a redemption that was never stored).
    first_again = decisions.made["e-key-again"][0]
    assert isinstance(first_again, Receipt) and first_again.replayed
    assert error_code(decisions.made["e-key-again"][1]) == "USAGE_LIMIT_REACHED"
    assert redemption_id_for(retailer, "e-key") not in recorded_ids(database_url)
    first_c, second_c = decisions.made["c-raced"]
    assert isinstance(first_c, Receipt) and isinstance(second_c, Receipt)
    assert first_c.redemption_id != second_c.redemption_id and receipts["c-raced"] == second_c
    first_f, second_f = decisions.made["f-key-taken"]
    assert isinstance(first_f, Receipt) and not first_f.replayed and second_f == receipts["f-key-taken"]
    assert decisions.made["a-fresh"] == [receipts["a-fresh"]]

    # The log: each coupon's versions contiguous, the batch's events in arrival order.
    def redeemed_ids(coupon_id: UUID) -> list[tuple[int, UUID]]:
        return [
            (event.originator_version, event.redemption_id)
            for event in ledger.events.get(coupon_id)
            if isinstance(event, Coupon.Redeemed)
        ]

    assert [t for _, t in log_of(database_url, a.id)] == ["Coupon.Created"] + ["Coupon.Redeemed"] * 5
    assert redeemed_ids(a.id) == [
        (2, early.redemption_id),
        (3, receipts["a-fresh"].redemption_id),
        (4, receipts["twice-first"].redemption_id),
        (5, receipts["clash-first"].redemption_id),
        (6, receipts["a-late"].redemption_id),
    ]
    assert log_of(database_url, b.id) == [(1, "Coupon.Created"), (2, "Coupon.Deactivated")]
    assert redeemed_ids(c.id) == [(2, raced["C"].redemption_id), (3, second_c.redemption_id)]
    assert redeemed_ids(e.id) == [(2, raced["E"].redemption_id)]
    assert redeemed_ids(f.id) == [(2, raced["F"].redemption_id)]
    for coupon_id in (a.id, b.id, c.id, e.id, f.id):
        versions = [v for v, _ in log_of(database_url, coupon_id)]
        assert versions == list(range(1, len(versions) + 1))
    assert redeemed_events(database_url) == recorded_redemptions(database_url) == 9
    clash: Redemption = ledger.repository.get(redemption_id_for(retailer, "clash"))
    assert isinstance(clash, Redemption) and clash.original_subtotal == SUBTOTAL
    assert ledger.get_coupon(retailer, "CHARLIE").uses_count == 2

    env = eventsourcing_env(database_url, pool_size=1, max_overflow=2)
    project_to_head(env, database_url)
    assert [uses_count(database_url, i) for i in (a.id, b.id, c.id, e.id, f.id)] == [5, 0, 2, 1, 1]
    view = construct_view(env)
    try:
        report = verify(ledger, view)
    finally:
        view.datastore.close()
    assert report.violations == []
    assert (report.coupons, report.redemptions) == (5, 9)


# --- 3. SIGKILL under load ---------------------------------------------------------------------------

LOAD_THREADS = 24
ACKNOWLEDGED_BEFORE_KILL = 40
LOST_ANSWERS = 5


def events_lock_waiters(url: str) -> int:
    """Sessions waiting for a lock on the events table (a writer blocked in its save)."""
    return int(
        scalar(
            url,
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'ledger_events'::regclass"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
    )


@pytest.mark.slow
def test_a_server_killed_mid_load_loses_no_acknowledged_redemption_and_retries_with_the_same_key_replay_it(
    database_url: str, tmp_path: Path
) -> None:
    retailer_id, api_key = create_retailer(database_url)
    with cluster(database_url, tmp_path) as running, http_client(LOAD_THREADS) as client:
        (server,) = running.start(1)
        coupon_id = UUID(create_coupon(server, api_key, "SURVIVE", None)["id"])

        # Load: threads applying under fresh keys until the server is gone.
        first: dict[str, httpx.Response | httpx.TransportError] = {}
        numbers = itertools.count()
        lock = threading.Lock()
        killed = threading.Event()

        def load() -> None:
            while not killed.is_set():
                with lock:
                    key = f"load-{next(numbers)}"
                try:
                    result: httpx.Response | httpx.TransportError = apply_over_http(
                        client, server, api_key, "SURVIVE", key
                    )
                except httpx.TransportError as error:  # no answer: the server died first
                    result = error
                with lock:
                    first[key] = result

        def acknowledged() -> int:
            with lock:
                return sum(isinstance(r, httpx.Response) and r.status_code == 201 for r in first.values())

        lost = [f"lost-{i}" for i in range(LOST_ANSWERS)]
        with ThreadPoolExecutor(LOAD_THREADS) as pool, ExitStack() as cleanup:
            cleanup.callback(killed.set)  # whatever happens, the load threads stop before the pool is joined
            for _ in range(LOAD_THREADS):
                pool.submit(load)
            # Answers lost on the way back: committed by the server, never read by the client.
            for key in lost:
                cleanup.callback(send_apply_without_reading(server, api_key, "SURVIVE", key).close)
            lost_ids = {redemption_id_for(retailer_id, key) for key in lost}
            wait_for(lambda: acknowledged() >= ACKNOWLEDGED_BEFORE_KILL, 60, interval=0.005, message="201s")
            wait_for(lambda: lost_ids <= recorded_ids(database_url), 60, interval=0.01, message="the lost answers")
            # Hold the events table's lock until the server's writer is blocked inside a save: the
            # requests of that batch (and every one queued behind it) are in flight when it dies.
            with psycopg.connect(database_url) as blocker:
                blocker.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
                wait_for(lambda: events_lock_waiters(database_url) > 0, 60, interval=0.005, message="a blocked save")
                server.kill()  # SIGKILL: no shutdown, no draining of the writer's queue
                killed.set()
                # The dead server's backend would still run its blocked save once the lock is
                # released (PostgreSQL notices a dead client only when it next writes to it), and
                # could commit it while the checks below read the log. End it, as the loss of the
                # connection eventually would: that batch is then certainly not stored.
                blocker.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks"
                    " WHERE NOT granted AND relation = 'ledger_events'::regclass AND pid <> pg_backend_pid()"
                )
                wait_for(lambda: events_lock_waiters(database_url) == 0, 30, interval=0.01, message="no blocked save")
                blocker.rollback()

        with lock:
            answered = {k: r for k, r in first.items() if isinstance(r, httpx.Response)}
            unanswered = [k for k, r in first.items() if not isinstance(r, httpx.Response)]
            in_flight = {k for k, r in first.items() if isinstance(r, httpx.ReadError | httpx.RemoteProtocolError)}
        assert {r.status_code for r in answered.values()} == {201}
        acked = {k: UUID(r.json()["redemption_id"]) for k, r in answered.items()}
        assert all(acked[k] == redemption_id_for(retailer_id, k) for k in acked)
        assert len(acked) >= ACKNOWLEDGED_BEFORE_KILL

        # Every acknowledged redemption is in the log, on its coupon and as its own aggregate; the
        # batch blocked in its save at the kill is not, so some requests in flight were lost.
        logged = recorded_ids(database_url)
        assert set(acked.values()) <= logged
        assert {e.redemption_id for e in redeemed_on_coupon(database_url, coupon_id)} == logged
        committed = {k for k in [*unanswered, *lost] if redemption_id_for(retailer_id, k) in logged}
        assert set(lost) <= committed
        assert in_flight - committed, "no request was in flight, uncommitted, when the server died"

        # A new server on the same database; every request without an answer, or with one, is retried.
        (restarted,) = running.start(1)
        retry_keys = [*acked, *lost, *unanswered]
        with ThreadPoolExecutor(LOAD_THREADS) as pool:
            retried = dict(
                zip(
                    retry_keys,
                    pool.map(partial(apply_over_http, client, restarted, api_key, "SURVIVE"), retry_keys),
                    strict=True,
                )
            )

        assert Counter(r.status_code for r in retried.values()) == {201: len(retry_keys)}
        for key, response in retried.items():
            redemption_id = UUID(response.json()["redemption_id"])
            assert redemption_id == acked.get(key, redemption_id_for(retailer_id, key))
            # Acknowledged, or committed without an answer: replayed; otherwise redeemed now.
            replayed = response.headers.get("Idempotent-Replayed") == "true"
            assert replayed == (key in acked or key in committed), key

        distinct_keys = len(set(retry_keys))
        assert distinct_keys == len(retry_keys)
        assert redeemed_events(database_url, coupon_id) == recorded_redemptions(database_url) == distinct_keys
        assert caught_up_uses(database_url, coupon_id) == distinct_keys
        assert_verified(database_url)


# --- 4. one process: no version race to lose -----------------------------------------------------------

THREADS = 200


def test_two_hundred_threads_applying_one_coupon_through_one_ledger_share_one_batch_and_lose_no_race(
    database_url: str, open_ledgers: list[CouponLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = open_test_ledger(database_url)
    open_ledgers.append(ledger)
    retailer = UUID("00000000-0000-4000-8000-0000000000bb")
    coupon = new_coupon(ledger, retailer, "CROWD", "percentage", Decimal("10"), max_uses=THREADS)
    queued = QueuedCommands(ledger, monkeypatch)
    stats = ledger.writer.stats
    before = (stats.batches, stats.commands, stats.events, stats.reads, stats.conflicts)

    with ThreadPoolExecutor(THREADS) as pool, held_writer(ledger):
        calls = [pool.submit(apply, ledger, retailer, "CROWD", SUBTOTAL) for _ in range(THREADS)]
        queued.wait_for(THREADS + 1)  # and the hold command
    results = [answer(call) for call in calls]

    assert Counter(map(error_code, results)) == {"REDEEMED": THREADS}
    receipts = [r for r in results if isinstance(r, Receipt)]
    assert len({r.redemption_id for r in receipts}) == THREADS
    assert all(r.quote.discount_amount == Decimal("10.00") and not r.replayed for r in receipts)
    # The hold command's batch, then all two hundred in one: one save, no conflict, and no read:
    # the writer holds the coupon as it stored it, and the redemptions are new (the save's version
    # check stands for both reads).
    after = (stats.batches, stats.commands, stats.events, stats.reads, stats.conflicts)
    assert [n - m for n, m in zip(after, before, strict=True)] == [2, THREADS + 1, 2 * THREADS, 0, 0]
    assert ledger.version_conflicts == 0

    events = list(ledger.events.get(coupon.id))
    assert [e.originator_version for e in events] == list(range(1, THREADS + 2))
    assert sorted(e.redemption_id for e in events if isinstance(e, Coupon.Redeemed)) == sorted(
        r.redemption_id for r in receipts
    )
    assert redeemed_events(database_url, coupon.id) == recorded_redemptions(database_url) == THREADS
    with pytest.raises(LedgerError) as refused:
        apply(ledger, retailer, "CROWD", SUBTOTAL)
    assert refused.value.code == "USAGE_LIMIT_REACHED"


# --- work in the save's transaction (the checkout's order and the coupon's redemption) ---------------


def test_work_failing_in_a_batch_rejects_its_own_command_alone_and_the_others_are_decided_again(
    database_url: str, ledger: CouponLedger, retailer_id: UUID
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE work_done (key text PRIMARY KEY)")
    new_coupon(ledger, retailer_id, "WORKED", "fixed", Decimal("5"), max_uses=3)

    def record(key: str) -> Callable[[Any, Receipt], None]:
        def work(conn: Any, receipt: Receipt) -> Receipt:
            conn.execute("INSERT INTO work_done (key) VALUES (%s)", (key,))
            return receipt

        return work

    def refuse(conn: Any, receipt: Receipt) -> None:
        raise ValueError("refused by its work")

    def fail_in_sql(conn: Any, receipt: Receipt) -> None:
        conn.execute("INSERT INTO work_done (key) VALUES (NULL)")  # violates NOT NULL

    plan = [("k1", record("k1")), ("k2", refuse), ("k3", record("k3")), ("k4", fail_in_sql), ("k5", record("k5"))]
    plan.append(("k6", record("k6")))
    with held_writer(ledger):  # every command below is decided in one batch
        futures = {
            key: ledger.writer.submit(
                *planned(InTransaction(Redeem(retailer_id, "WORKED", Order.of(SUBTOTAL), key), work))
            )
            for key, work in plan
        }
    outcomes = {key: (future.exception(30) or future.result()) for key, future in futures.items()}

    assert isinstance(outcomes["k2"], ValueError)
    assert isinstance(outcomes["k4"], psycopg.errors.NotNullViolation)
    # k2 and k4 consumed nothing: k5 still fits under max_uses=3, and k6 is the one over it.
    assert all(isinstance(outcomes[k], Receipt) for k in ("k1", "k3", "k5")), outcomes
    assert isinstance(outcomes["k6"], LedgerError) and outcomes["k6"].code == "USAGE_LIMIT_REACHED"
    with psycopg.connect(database_url) as conn:
        done = {row[0] for row in conn.execute("SELECT key FROM work_done").fetchall()}
    assert done == {"k1", "k3", "k5"}
    assert ledger.get_coupon(retailer_id, "WORKED").uses_count == 3
    stored = recorded_ids(database_url)
    assert {redemption_id_for(retailer_id, k) for k in ("k1", "k3", "k5")} <= stored
    assert not {redemption_id_for(retailer_id, k) for k in ("k2", "k4", "k6")} & stored


def test_a_replayed_redemption_runs_its_work_with_the_replayed_receipt_in_a_transaction_of_its_own(
    database_url: str, ledger: CouponLedger, retailer_id: UUID
) -> None:
    new_coupon(ledger, retailer_id, "ONCEWORK", "fixed", Decimal("5"))

    def note(conn: Any, receipt: Receipt) -> tuple[UUID, bool, int]:
        row = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
        return receipt.redemption_id, receipt.replayed, row[0] if isinstance(row, tuple) else row["count"]

    first = apply(ledger, retailer_id, "ONCEWORK", SUBTOTAL, "same-key", also=note)
    again = apply(ledger, retailer_id, "ONCEWORK", SUBTOTAL, "same-key", also=note)

    assert first[1] is False and again[1] is True
    assert again[0] == first[0]
    assert again[2] == first[2] + 2  # the first saw its own two events (coupon, redemption) uncommitted: none since
