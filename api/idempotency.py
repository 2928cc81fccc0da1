"""Idempotency-Key for the HTTP routes whose keys are not kept in the ledger (apply's and reserve's
are: their redemption's or reservation's id is derived from the key).

One table, ``idempotency_keys``, keyed by (retailer, key), holds the request's fingerprint (method,
path, query and body, the body as canonical JSON) and, once the request succeeded, its response
(status and body). A route takes it in one line::

    async def route(body: ..., caller: CallerDep, idempotency: IdempotencyDep) -> Response:
        return await idempotency.run(caller.retailer_id, lambda claim: work(claim))

and ``run`` gives the route's semantics:
- no key: the work runs, nothing is stored;
- a new key: the request claims it (a row with a claim id and a lease), runs, and stores a 2xx
  response in place of the claim. ``work`` may store it itself, inside the transaction of its own
  writes, with ``claim.record(connection, status, body)`` (the checkout does: the order and its
  replay record are committed together or not at all); otherwise it is stored right after;
- the same key and the same request, answered: the first response again, with
  ``Idempotent-Replayed: true``, and nothing is done;
- the same key, another request (route or body): 409 IDEMPOTENCY_KEY_REUSED;
- the same key, still in flight: the second request waits for the first (polling, up to
  ``idempotency_wait_seconds``) and replays its response; past that, 409 IDEMPOTENCY_KEY_IN_USE
  with Retry-After;
- an error response (or an exception) is not stored: the claim is deleted, the key is free and a
  retry runs again;
- a claim whose lease has passed (its process died mid-request) is taken over by the next request
  with that key, whatever its body. A claim that was taken over can no longer record: recording
  checks the claim id, so a slow first request that wakes up after its lease cannot store an order
  beside the one the second request placed (``ClaimLost``, and ``run`` then replays the second's).

Keys are kept for good, like the ledger's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import Depends, Header, Request, Response
from psycopg import Connection
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from api.schemas import IdempotencyKey

log = logging.getLogger(__name__)

REPLAYED_HEADER = "Idempotent-Replayed"
FIRST_POLL_SECONDS = 0.02
MAX_POLL_SECONDS = 0.25

CLAIM = """
INSERT INTO idempotency_keys AS k (retailer_id, key, fingerprint, method, path, claim, lease_until)
VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp() + make_interval(secs => %s))
ON CONFLICT (retailer_id, key) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, method = EXCLUDED.method, path = EXCLUDED.path,
        claim = EXCLUDED.claim, lease_until = EXCLUDED.lease_until, created_at = clock_timestamp()
    WHERE k.response_status IS NULL AND k.lease_until <= clock_timestamp()
RETURNING claim
"""
EXISTING = """
SELECT fingerprint, method, path, response_status, response_body
FROM idempotency_keys WHERE retailer_id = %s AND key = %s
"""
RECORD = """
UPDATE idempotency_keys
SET response_status = %s, response_body = %s, claim = NULL, lease_until = NULL, completed_at = clock_timestamp()
WHERE retailer_id = %s AND key = %s AND claim = %s
"""
RENEW = """
UPDATE idempotency_keys SET lease_until = clock_timestamp() + make_interval(secs => %s)
WHERE retailer_id = %s AND key = %s AND claim = %s
"""
ABANDON = "DELETE FROM idempotency_keys WHERE retailer_id = %s AND key = %s AND claim = %s"


class ClaimLost(Exception):
    """The key's claim was taken over (its lease had passed) or freed: this request may not record."""


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes

    def replay(self) -> Response:
        return Response(
            self.body, status_code=self.status, media_type="application/json", headers={REPLAYED_HEADER: "true"}
        )


@dataclass
class Claim:
    """This request's hold on its key, until it records a response or gives the key up."""

    retailer_id: UUID
    key: str
    id: UUID
    recorded: StoredResponse | None = field(default=None)

    def record(self, conn: Connection[Any], status: int, body: bytes) -> None:
        """Store the response on ``conn``, in the caller's transaction: it is kept if and only if
        that transaction commits. ClaimLost (rolling the caller's transaction back) if the claim
        is no longer this request's."""
        cursor = conn.execute(RECORD, (status, body, self.retailer_id, self.key, self.id))
        if cursor.rowcount != 1:
            raise ClaimLost(self.key)
        self.recorded = StoredResponse(status, body)


@dataclass(frozen=True)
class InFlight:
    """Another request holds the key (with the same fingerprint) and has not answered yet."""


class IdempotencyStore:
    def __init__(self, pool: ConnectionPool, lease_seconds: float, wait_seconds: float) -> None:
        self.pool = pool
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds

    def claim(
        self, retailer_id: UUID, key: str, fingerprint: str, method: str, path: str
    ) -> Claim | StoredResponse | InFlight:
        """One attempt: claim the key, or find its stored response, or find it in flight.
        IDEMPOTENCY_KEY_REUSED if it is answered or in flight for another request."""
        claim_id = uuid4()
        with self.pool.connection() as conn:
            row = conn.execute(
                CLAIM, (retailer_id, key, fingerprint, method, path, claim_id, self.lease_seconds)
            ).fetchone()
            if row is not None:
                return Claim(retailer_id, key, claim_id)
            existing = conn.execute(EXISTING, (retailer_id, key)).fetchone()
        if existing is None:  # freed between the two statements: try again
            return InFlight()
        stored_fingerprint, stored_method, stored_path, status, body = existing
        if stored_fingerprint != fingerprint:
            other = (
                "a different body"
                if (stored_method, stored_path) == (method, path)
                else f"another route ({stored_method} {stored_path})"
            )
            raise ApiError(
                "IDEMPOTENCY_KEY_REUSED",
                f"This Idempotency-Key was already used with {other}.",
                idempotency_key=key,
                method=stored_method,
                path=stored_path,
            )
        if status is None:
            return InFlight()
        return StoredResponse(int(status), bytes(body))

    def record(self, claim: Claim, status: int, body: bytes) -> None:
        with self.pool.connection() as conn:
            claim.record(conn, status, body)

    def renew(self, claim: Claim) -> None:
        """Extend the claim's lease (a long request still running); ClaimLost if it was taken over."""
        with self.pool.connection() as conn:
            if conn.execute(RENEW, (self.lease_seconds, claim.retailer_id, claim.key, claim.id)).rowcount != 1:
                raise ClaimLost(claim.key)

    def abandon(self, claim: Claim) -> None:
        with self.pool.connection() as conn:
            conn.execute(ABANDON, (claim.retailer_id, claim.key, claim.id))


Work = Callable[[Claim | None], Awaitable[Response]]


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """The request as a key remembers it: method, path, query and body (JSON compared by value:
    key order and spacing do not matter)."""
    canonical: Any
    try:
        canonical = json.loads(body) if body else None
        content = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    except (ValueError, RecursionError):
        content = "raw:" + body.hex()
    return hashlib.sha256(json.dumps([method, path, query, content]).encode()).hexdigest()


@dataclass
class Idempotency:
    """The Idempotency-Key of one request (see the module's docstring)."""

    request: Request
    key: str | None

    async def run(self, retailer_id: UUID, work: Work) -> Response:
        if self.key is None:
            return await work(None)
        store: IdempotencyStore = self.request.app.state.services.idempotency
        request = self.request
        method, path = request.method, request.url.path
        signature = fingerprint(method, path, request.url.query, await request.body())
        while True:
            claim = await self._claim(store, retailer_id, signature, method, path)
            if isinstance(claim, Response):
                return claim
            try:
                response = await work(claim)
            except ClaimLost:
                log.warning("Idempotency-Key %r was taken over while its request ran", self.key)
                continue  # another request took the key over: wait for its answer, replay it
            except Exception:
                await abandon(store, claim)
                raise
            if not 200 <= response.status_code < 300:
                await abandon(store, claim)
            elif claim.recorded is None:
                try:
                    await run_in_threadpool(store.record, claim, response.status_code, bytes(response.body))
                except ClaimLost:
                    log.warning("Idempotency-Key %r was taken over before its response was stored", self.key)
            return response

    async def _claim(
        self, store: IdempotencyStore, retailer_id: UUID, signature: str, method: str, path: str
    ) -> Claim | Response:
        assert self.key is not None
        deadline = time.monotonic() + store.wait_seconds
        pause = FIRST_POLL_SECONDS
        while True:
            outcome = await run_in_threadpool(store.claim, retailer_id, self.key, signature, method, path)
            if isinstance(outcome, Claim):
                return outcome
            if isinstance(outcome, StoredResponse):
                return outcome.replay()
            if time.monotonic() >= deadline:
                raise ApiError(
                    "IDEMPOTENCY_KEY_IN_USE",
                    "A request with this Idempotency-Key is still in progress; retry after it has finished"
                    " to get its response.",
                    idempotency_key=self.key,
                    retry_after=1,
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_POLL_SECONDS)


async def abandon(store: IdempotencyStore, claim: Claim) -> None:
    """Free the key after an error; if even that fails (the database is away), its lease ends it."""
    try:
        await run_in_threadpool(store.abandon, claim)
    except Exception:
        log.warning("could not free Idempotency-Key %r; it is free again when its lease ends", claim.key, exc_info=True)


IDEMPOTENCY_HEADER_DESCRIPTION = (
    "Makes the call safe to retry: the same key with the same request returns the first 2xx response again"
    " (header Idempotent-Replayed: true) and does nothing twice; with another request it is 409"
    " IDEMPOTENCY_KEY_REUSED; while the first is still running, the retry waits for it (409"
    " IDEMPOTENCY_KEY_IN_USE with Retry-After if it takes too long). Error responses are not kept."
)


async def idempotency(
    request: Request,
    idempotency_key: Annotated[
        IdempotencyKey | None, Header(alias="Idempotency-Key", description=IDEMPOTENCY_HEADER_DESCRIPTION)
    ] = None,
) -> Idempotency:
    return Idempotency(request, idempotency_key)


IdempotencyDep = Annotated[Idempotency, Depends(idempotency)]

REPLAYED_RESPONSE_HEADER = {
    REPLAYED_HEADER: {
        "description": "`true` when this is the first response to the same key and request, again.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
IDEMPOTENCY_CONFLICTS = ["IDEMPOTENCY_KEY_REUSED", "IDEMPOTENCY_KEY_IN_USE"]
