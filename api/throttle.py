"""The brute-force limit on failed code lookups: a shopper of a key who keeps asking for codes that
do not exist is answered 429 RATE_LIMITED (with Retry-After) once its budget is spent.

What counts: a lookup answered COUPON_NOT_FOUND, per budget key = the API key (by its hash) and
the shopper (``customer:<customer_id>`` when the request names one, else ``addr:<client
address>``; both when the route asks for it). A successful lookup is never counted.

The budget is pyrate-limiter's GCRA (a leaky bucket of ``budget`` failures, refilled at
``budget`` per ``window``) in its ``StateBucket``, with a ``StateStore`` of ours that keeps each
budget key's state in one PostgreSQL row: every process and every restart sees the same budget.
Only a failed lookup asks the database. Before a lookup, a process consults its own memory of the
budget keys it has seen spent (until their Retry-After), so a shopper within budget costs no
query, and a shopper who has spent it is refused every lookup, found or not: otherwise a guesser
would still learn which codes exist from the 429-versus-200 split.

Routes use it through ``guard``, as a context manager around the lookup::

    with throttle.guard(request, caller, customer_id=body.customer_id):        # a sync route
        quote = caller.services.ledger.validate(...)

    async with throttle.guard(request, caller, customer_id=body.customer_id):  # an async route
        receipt = await caller.services.ledger.apply_async(...)
"""

from __future__ import annotations

import ipaddress
import math
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Protocol

from psycopg_pool import ConnectionPool
from pyrate_limiter import (
    GCRA,
    Decision,
    Rate,
    RateItem,
    StateAlgorithm,
    StateBucket,
    StateStore,
    WallClock,
)
from pyrate_limiter.abstracts.algorithm import State
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from api.errors import ApiError
from api.retailers import hash_key
from api.settings import IPNetwork, Settings
from ledger.errors import LedgerError

RATE_LIMITED = "RATE_LIMITED"
NOT_FOUND = "COUPON_NOT_FOUND"
# GCRA rounds each unit's share of the window up to a whole microsecond, so a state may outlast the
# window by up to `budget` microseconds: at most a second with the largest budget the settings allow.
IDLE_MARGIN = timedelta(seconds=1)
PRUNE_ABOVE = 4096  # remembered refusals before expired ones are dropped (at most once a second)
UNKNOWN_ADDRESS = "unknown"

INSERT_MISSING = (
    "INSERT INTO rate_limit_state (key, state, updated_at) VALUES (%s, %s, %s) ON CONFLICT (key) DO NOTHING"
)
SELECT_LOCKED = "SELECT state FROM rate_limit_state WHERE key = %s FOR UPDATE"
UPDATE_STATE = "UPDATE rate_limit_state SET state = %s, updated_at = %s WHERE key = %s"
SELECT_STATE = "SELECT state FROM rate_limit_state WHERE key = %s"
DELETE_KEY = "DELETE FROM rate_limit_state WHERE key = %s"
DELETE_IDLE = "DELETE FROM rate_limit_state WHERE updated_at < %s"


def _instant(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)


def _encoded(state: State) -> list[str]:
    return [repr(value) if isinstance(value, float) else str(value) for value in state]


class PostgresStateStore(StateStore):
    """One budget key's state for a pyrate-limiter ``StateAlgorithm``, in a row of
    ``rate_limit_state``: ``check`` takes the row's lock (inserting the initial state first if
    there is none), steps the algorithm and writes what it admitted, in one transaction, so
    processes counting the same key take turns. Timestamps are the wall clock (epoch ms), which
    the processes share, as with the library's Redis store."""

    is_async = False
    default_clock = WallClock()

    def __init__(self, pool: ConnectionPool, key: str) -> None:
        self.pool = pool
        self.key = key
        self.state: State | None = None  # the state the last check left stored

    def check(self, algorithm: StateAlgorithm, rates: list[Rate], now: int, weight: int) -> Decision:
        at = _instant(now)
        initial = algorithm.initial(rates)
        with self.pool.connection() as conn, conn.transaction():
            row = None
            while row is None:  # the idle-row sweeper may delete it between the two statements
                conn.execute(INSERT_MISSING, (self.key, _encoded(initial), at))
                row = conn.execute(SELECT_LOCKED, (self.key,)).fetchone()
            state = self._decoded(algorithm, rates, row[0])
            new_state, decision = algorithm.step(rates, state, now, weight)
            if decision.allowed:  # a refusal leaves the state as it was: nothing to write
                conn.execute(UPDATE_STATE, (_encoded(new_state), at, self.key))
        self.state = new_state
        return decision

    def read(self, algorithm: StateAlgorithm, rates: list[Rate]) -> State:
        with self.pool.connection() as conn:
            row = conn.execute(SELECT_STATE, (self.key,)).fetchone()
        return algorithm.initial(rates) if row is None else self._decoded(algorithm, rates, row[0])

    def reset(self) -> None:
        with self.pool.connection() as conn:
            conn.execute(DELETE_KEY, (self.key,))

    @staticmethod
    def _decoded(algorithm: StateAlgorithm, rates: list[Rate], stored: Sequence[str]) -> State:
        """The stored state, or the initial one if it does not fit these rates (the budget was
        reconfigured) or cannot be read."""
        if len(stored) != len(rates):
            return algorithm.initial(rates)
        try:
            return algorithm.decode(stored)
        except ValueError:
            return algorithm.initial(rates)


def delete_idle_rate_limits(pool: ConnectionPool, window_seconds: int, now: datetime | None = None) -> int:
    """Delete the budget rows idle for longer than the window (their state is the initial one
    again); how many. For the sweeper."""
    cutoff = (now or _instant(WallClock().now())) - timedelta(seconds=window_seconds) - IDLE_MARGIN
    with pool.connection() as conn:
        return conn.execute(DELETE_IDLE, (cutoff,)).rowcount


# --- the client address ------------------------------------------------------------------------


def parse_ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as a peer or an X-Forwarded-For hop gives it (with or without a port, IPv6 in
    brackets or not); None for anything else. An IPv4 address mapped into IPv6 is the IPv4 one."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):  # [2001:db8::1]:443
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # 203.0.113.7:51234
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def shopper_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The address a budget is kept for: an IPv4 address, or an IPv6 address's /64 (one host is
    usually given a whole /64, and could otherwise change address at every guess)."""
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[IPNetwork]) -> str:
    """The shopper's address: the TCP peer, unless the peer is a trusted proxy; then the
    right-most X-Forwarded-For hop that is not itself a trusted proxy (hops left of it are
    whatever the client wrote). A hop that is not an address stops the walk at the last trusted
    one: a malformed header never fails the request, and never earns a fresh budget either."""
    peer_ip = parse_ip(peer)
    if peer_ip is None:
        return peer or UNKNOWN_ADDRESS  # not an IP peer (a test client, a Unix socket)
    client = peer_ip
    if not _is_trusted(client, trusted):
        return shopper_address(client)
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        ip = parse_ip(hop)
        if ip is None:
            break
        client = ip
        if not _is_trusted(ip, trusted):
            break
    return shopper_address(client)


def _is_trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Sequence[IPNetwork]) -> bool:
    return any(ip.version == network.version and ip in network for network in trusted)


# --- the throttle and its guard ----------------------------------------------------------------


class Throttle:
    """The budgets of one process: counts failed lookups in PostgreSQL, remembers the budget
    keys it has seen spent, and hands out guards."""

    def __init__(
        self,
        pool: ConnectionPool,
        budget: int,
        window_seconds: int,
        trusted_proxies: Sequence[IPNetwork] = (),
        clock: WallClock | None = None,
    ) -> None:
        self.pool = pool
        self.window_seconds = window_seconds
        self.trusted_proxies = tuple(trusted_proxies)
        self.rates = [Rate(budget, window_seconds * 1000)]  # burst = budget: the whole budget at once
        self.algorithm = GCRA()
        self.clock = clock or WallClock()  # shared by the processes: epoch milliseconds
        self._spent: dict[str, int] = {}  # budget key -> until when (epoch ms) it is refused
        self._lock = threading.Lock()
        self._pruned_at = 0

    @classmethod
    def from_settings(cls, pool: ConnectionPool, settings: Settings) -> Throttle:
        return cls(pool, settings.throttle_budget, settings.throttle_window, settings.trusted_proxies)

    def guard(self, request: Request, customer_id: str | None = None, count_address: bool = False) -> Guard:
        return Guard(self, request, customer_id, count_address)

    def budget_keys(self, request: Request, customer_id: str | None, count_address: bool) -> list[str]:
        api_key = (request.headers.get("authorization") or "").partition(" ")[2]
        owner = hash_key(api_key.strip())
        keys = []
        if customer_id is not None:
            keys.append(f"{owner}:customer:{customer_id}")
        if customer_id is None or count_address:
            peer = request.client.host if request.client is not None else None
            address = client_address(peer, request.headers.getlist("x-forwarded-for"), self.trusted_proxies)
            keys.append(f"{owner}:addr:{address}")
        return keys

    @property
    def remembers_spent_keys(self) -> bool:
        return bool(self._spent)

    def seconds_refused(self, keys: Sequence[str]) -> int | None:
        """From this process's memory only: seconds until these budget keys may look up again,
        or None if this process has not seen any of them spent."""
        if not self._spent:
            return None
        now = self.clock.now()
        until = 0
        for key in keys:
            key_until = self._spent.get(key, 0)
            if 0 < key_until <= now:
                self._spent.pop(key, None)  # its wait is over
            until = max(until, key_until)
        return _seconds(until - now) if until > now else None

    def count_failure(self, keys: Sequence[str]) -> int | None:
        """Count one failed lookup against each budget key (in PostgreSQL); the seconds to
        wait if any budget refuses it, else None. A budget this failure leaves spent is
        remembered, so that the next lookup is refused without a query."""
        refused_ms: int | None = None
        for key in keys:
            store = PostgresStateStore(self.pool, key)
            bucket = StateBucket(self.rates, self.algorithm, store, self.clock)
            now = self.clock.now()
            decision = bucket.put_decision(RateItem(key, now, 1))
            assert isinstance(decision, Decision)  # a sync store decides at once
            if decision.allowed:
                assert store.state is not None
                _, decision = self.algorithm.step(self.rates, store.state, now, 1)  # would the next one pass?
                if not decision.allowed:
                    self._remember(key, now + _wait_ms(decision))
                continue
            wait_ms = _wait_ms(decision)
            self._remember(key, now + wait_ms)
            refused_ms = max(refused_ms or 0, wait_ms)
        return None if refused_ms is None else _seconds(refused_ms)

    def delete_idle(self) -> int:
        """Delete the budget rows idle for longer than the window; how many. For the sweeper."""
        return delete_idle_rate_limits(self.pool, self.window_seconds, now=_instant(self.clock.now()))

    def _remember(self, key: str, until_ms: int) -> None:
        with self._lock:
            self._spent[key] = max(until_ms, self._spent.get(key, 0))
            now = self.clock.now()
            if len(self._spent) > PRUNE_ABOVE and now - self._pruned_at >= 1000:
                self._pruned_at = now
                self._spent = {k: until for k, until in self._spent.items() if until > now}


def _wait_ms(decision: Decision) -> int:
    # GCRA always gives a wait for a weight of one; a weight that could never pass is not ours.
    return decision.retry_after_ms if decision.retry_after_ms is not None else 1000


def _seconds(milliseconds: int) -> int:
    """Retry-After: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(milliseconds / 1000))


def rate_limited(seconds: int) -> ApiError:
    return ApiError(
        RATE_LIMITED,
        f"Too many lookups of codes that do not exist; retry after {seconds} seconds.",
        retry_after=seconds,
    )


def _is_not_found(error: BaseException | None) -> bool:
    return isinstance(error, LedgerError) and error.code == NOT_FOUND


class Guard:
    """Around one code lookup: refuses it at once if this process has seen the shopper's budget
    spent; when the lookup fails with COUPON_NOT_FOUND, counts it, and answers 429 instead if
    the budget refuses it. A sync ``with`` for a sync route, ``async with`` for an async one."""

    def __init__(self, throttle: Throttle, request: Request, customer_id: str | None, count_address: bool) -> None:
        self.throttle = throttle
        self.request = request
        self.customer_id = customer_id
        self.count_address = count_address

    def keys(self) -> list[str]:
        return self.throttle.budget_keys(self.request, self.customer_id, self.count_address)

    def _refuse_if_spent(self) -> None:
        if not self.throttle.remembers_spent_keys:  # the usual case: nothing to compute
            return
        seconds = self.throttle.seconds_refused(self.keys())
        if seconds is not None:
            raise rate_limited(seconds)

    def __enter__(self) -> Guard:
        self._refuse_if_spent()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if _is_not_found(error):
            seconds = self.throttle.count_failure(self.keys())
            if seconds is not None:
                raise rate_limited(seconds) from None

    async def __aenter__(self) -> Guard:
        self._refuse_if_spent()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if _is_not_found(error):
            seconds = await run_in_threadpool(self.throttle.count_failure, self.keys())
            if seconds is not None:
                raise rate_limited(seconds) from None


class _HasThrottle(Protocol):
    @property
    def throttle(self) -> Throttle: ...


class ThrottledCaller(Protocol):
    """What ``guard`` needs of a caller (api.deps.Caller is one): the services holding the
    process's throttle. Structural, so that this module does not import the caller's."""

    @property
    def services(self) -> _HasThrottle: ...


def guard(
    request: Request, caller: ThrottledCaller, customer_id: str | None = None, count_address: bool = False
) -> Guard:
    """The guard of one lookup by ``caller``: ``with guard(...)`` or ``async with guard(...)``
    around the call that may raise COUPON_NOT_FOUND. ``count_address`` counts the client
    address too when a customer_id is sent (for keys whose customer_id is whatever a page sends)."""
    return caller.services.throttle.guard(request, customer_id, count_address)
