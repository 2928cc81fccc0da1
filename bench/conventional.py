"""The baseline the ledger must beat: a conventional row-locking coupon service.

This is the design a normal team would build, written competently: FastAPI, a pydantic
request model, async psycopg with a connection pool, and one transaction per redemption
in which a conditional ``UPDATE … SET uses_count = uses_count + 1 WHERE <every rule>``
takes the coupon's row lock and an ``INSERT`` records the redemption. Idempotency keys
are honoured by a unique (retailer_id, idempotency_key) constraint on that INSERT.

The UPDATE comes before the INSERT (not the key-claiming INSERT first) because the
redemption row can then be written once, complete, with the discount computed from the
row the UPDATE returns: one statement fewer per redemption. A repeated key makes the
INSERT do nothing; the transaction is then rolled back (giving the use back) and the
first redemption is answered again, or 409 if the body differs.

Used by ``bench/harness.py`` at two levels: ``apply`` (the engine, no HTTP) and
``create_app`` (the ASGI app, served by one uvicorn process). Its tables (``conv_*``)
live in the same database and PostgreSQL as the ledger, with the same default
durability (synchronous_commit on). Serve it alone with
``DATABASE_URL=… python -m bench.conventional --port 8001``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID, uuid4

import psycopg
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

# Pool size, measured with the harness's workloads on the 2-core bench machine. That machine was
# shared with other jobs, so 8, 16 and 32 ran alternately for several rounds; medians, requests/s
# for 8 / 16 / 32: engine hot 1242 / 1230 / 807, engine uniform 2714 / 3213 / 2296 (8 rounds);
# HTTP hot 510 / 476 / 440, HTTP uniform 978 / 1034 / 865 (4 rounds). 16 was the fastest or
# within 7% of it everywhere; 8 won only hot HTTP, and lost 16% on uniform; 32 never won (on one
# hot row, more connections only lengthen the queue on its lock, and 2 cores are busy already).
DEFAULT_POOL_SIZE = 16
CENT = Decimal("0.01")
HUNDRED = Decimal(100)

SCHEMA = """
CREATE TABLE IF NOT EXISTS conv_api_keys (
    key_hash text PRIMARY KEY,
    retailer_id uuid NOT NULL,
    name text NOT NULL
);
CREATE TABLE IF NOT EXISTS conv_coupons (
    id uuid PRIMARY KEY,
    retailer_id uuid NOT NULL,
    code text NOT NULL,
    discount_type text NOT NULL CHECK (discount_type IN ('percentage', 'fixed')),
    discount_value numeric(14, 2) NOT NULL CHECK (discount_value > 0),
    min_order_value numeric(14, 2),
    expires_at timestamptz,
    max_uses integer CHECK (max_uses >= 1),
    uses_count integer NOT NULL DEFAULT 0,
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (retailer_id, code)
);
CREATE TABLE IF NOT EXISTS conv_redemptions (
    id uuid PRIMARY KEY,
    retailer_id uuid NOT NULL,
    coupon_id uuid NOT NULL REFERENCES conv_coupons (id),
    code text NOT NULL,
    idempotency_key text,
    order_id text,
    original_subtotal numeric(14, 2) NOT NULL,
    discount_amount numeric(14, 2) NOT NULL,
    final_total numeric(14, 2) NOT NULL CHECK (final_total >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (retailer_id, idempotency_key)
);
"""

REDEEM = """
UPDATE conv_coupons SET uses_count = uses_count + 1
WHERE retailer_id = %(retailer_id)s AND code = %(code)s AND is_active
  AND (expires_at IS NULL OR expires_at > now())
  AND (max_uses IS NULL OR uses_count < max_uses)
  AND (min_order_value IS NULL OR min_order_value <= %(subtotal)s)
RETURNING id, code, discount_type, discount_value
"""

RECORD = """
INSERT INTO conv_redemptions
    (id, retailer_id, coupon_id, code, idempotency_key, order_id, original_subtotal, discount_amount, final_total)
VALUES (%(id)s, %(retailer_id)s, %(coupon_id)s, %(code)s, %(idempotency_key)s, %(order_id)s,
        %(subtotal)s, %(discount)s, %(final_total)s)
ON CONFLICT (retailer_id, idempotency_key) DO NOTHING
RETURNING id
"""

EARLIER_REDEMPTION = """
SELECT id, code, order_id, original_subtotal, discount_amount, final_total
FROM conv_redemptions WHERE retailer_id = %s AND idempotency_key = %s
"""

WHY_REFUSED = """
SELECT is_active, expires_at IS NOT NULL AND expires_at <= now(), expires_at, max_uses, uses_count, min_order_value
FROM conv_coupons WHERE retailer_id = %s AND code = %s
"""


@dataclass(frozen=True)
class ConventionalReceipt:
    redemption_id: UUID
    code: str
    original_subtotal: Decimal
    discount_amount: Decimal
    final_total: Decimal
    replayed: bool


class RedemptionRefused(Exception):
    """A redemption the service answers with a 4xx: ``status`` and a machine ``code``."""

    def __init__(self, status: int, code: str, message: str, /, **details: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def discount_for(discount_type: str, value: Decimal, subtotal: Decimal) -> Decimal:
    if discount_type == "percentage":
        return (subtotal * value / HUNDRED).quantize(CENT, rounding=ROUND_HALF_UP)
    return min(value, subtotal)


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


# --- set-up (synchronous: used by the harness before any load) ------------------------------------


def install(url: str) -> None:
    """Create the conventional service's tables (idempotent)."""
    with psycopg.connect(url) as conn:
        conn.execute(SCHEMA)


def create_retailer(url: str, name: str) -> tuple[UUID, str]:
    """A new retailer id and its bearer API key."""
    retailer_id = uuid4()
    api_key = "cv_" + secrets.token_urlsafe(32)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO conv_api_keys (key_hash, retailer_id, name) VALUES (%s, %s, %s)",
            (hash_key(api_key), retailer_id, name),
        )
    return retailer_id, api_key


def create_coupons(
    url: str,
    retailer_id: UUID,
    codes: Iterable[str],
    discount_type: str = "percentage",
    discount_value: Decimal = Decimal("10"),
) -> None:
    """Insert coupons with no limit, no minimum and no expiry (one COPY)."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        copy_sql = "COPY conv_coupons (id, retailer_id, code, discount_type, discount_value) FROM STDIN"
        with cur.copy(copy_sql) as copy:
            for code in codes:
                copy.write_row((uuid4(), retailer_id, code.strip().upper(), discount_type, discount_value))


def open_pool(url: str, size: int = DEFAULT_POOL_SIZE) -> AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]:
    """A pool of ``size`` autocommit connections (not opened yet: ``await pool.open()``)."""
    return AsyncConnectionPool(url, min_size=size, max_size=size, kwargs={"autocommit": True}, open=False)


# --- the engine --------------------------------------------------------------------------------------


async def apply(
    pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]],
    retailer_id: UUID,
    code: str,
    subtotal: Decimal,
    idempotency_key: str | None = None,
    order_id: str | None = None,
) -> ConventionalReceipt:
    """Redeem ``code`` once, in one transaction; raise RedemptionRefused if a rule fails."""
    code = code.strip().upper()
    async with pool.connection() as conn:
        async with conn.transaction():
            cur = await conn.execute(REDEEM, {"retailer_id": retailer_id, "code": code, "subtotal": subtotal})
            coupon = await cur.fetchone()
            if coupon is not None:
                coupon_id, stored_code, discount_type, discount_value = coupon
                discount = discount_for(discount_type, discount_value, subtotal)
                receipt = ConventionalReceipt(uuid4(), stored_code, subtotal, discount, subtotal - discount, False)
                cur = await conn.execute(
                    RECORD,
                    {
                        "id": receipt.redemption_id,
                        "retailer_id": retailer_id,
                        "coupon_id": coupon_id,
                        "code": stored_code,
                        "idempotency_key": idempotency_key,
                        "order_id": order_id,
                        "subtotal": subtotal,
                        "discount": discount,
                        "final_total": receipt.final_total,
                    },
                )
                if await cur.fetchone() is not None:
                    return receipt
            raise psycopg.Rollback()  # a rule failed or the key is taken: give the use back
        if idempotency_key is not None:
            earlier = await earlier_redemption(conn, retailer_id, idempotency_key, code, subtotal, order_id)
            if earlier is not None:
                return earlier
        raise await refusal(conn, retailer_id, code, subtotal)


async def earlier_redemption(
    conn: psycopg.AsyncConnection[TupleRow],
    retailer_id: UUID,
    idempotency_key: str,
    code: str,
    subtotal: Decimal,
    order_id: str | None,
) -> ConventionalReceipt | None:
    """The redemption first recorded under this key, if any; 409 if it was for another request."""
    cur = await conn.execute(EARLIER_REDEMPTION, (retailer_id, idempotency_key))
    row = await cur.fetchone()
    if row is None:
        return None
    redemption_id, earlier_code, earlier_order_id, original_subtotal, discount, final_total = row
    if (earlier_code, original_subtotal, earlier_order_id) != (code, subtotal, order_id):
        raise RedemptionRefused(
            409,
            "IDEMPOTENCY_KEY_REUSED",
            "This Idempotency-Key was already used with a different request.",
            idempotency_key=idempotency_key,
        )
    return ConventionalReceipt(redemption_id, earlier_code, original_subtotal, discount, final_total, True)


async def refusal(
    conn: psycopg.AsyncConnection[TupleRow], retailer_id: UUID, code: str, subtotal: Decimal
) -> RedemptionRefused:
    """Which rule the conditional UPDATE failed, first failure wins (the ledger's order)."""
    cur = await conn.execute(WHY_REFUSED, (retailer_id, code))
    row = await cur.fetchone()
    if row is None:
        return RedemptionRefused(404, "COUPON_NOT_FOUND", f"Coupon {code} does not exist.", code=code)
    is_active, expired, expires_at, max_uses, uses_count, min_order_value = row
    if not is_active:
        return RedemptionRefused(422, "COUPON_INACTIVE", f"Coupon {code} is not active.")
    if expired:
        return RedemptionRefused(422, "COUPON_EXPIRED", f"Coupon {code} has expired.", expired_at=str(expires_at))
    if max_uses is not None and uses_count >= max_uses:
        return RedemptionRefused(
            422, "USAGE_LIMIT_REACHED", f"Coupon {code} has reached its usage limit.", max_uses=str(max_uses)
        )
    if min_order_value is not None and subtotal < min_order_value:
        return RedemptionRefused(
            422,
            "MIN_ORDER_NOT_MET",
            f"Order subtotal {subtotal} is below the minimum {min_order_value} for {code}.",
            required_minimum=str(min_order_value),
            subtotal=str(subtotal),
        )
    # Every rule passes now: the coupon changed between the UPDATE and this SELECT.
    return RedemptionRefused(409, "CONFLICT", f"Coupon {code} changed during the request; retry.")


# --- the HTTP service --------------------------------------------------------------------------------


class ApplyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=100)
    subtotal: Decimal = Field(ge=0, max_digits=14, decimal_places=2)
    order_id: str | None = Field(default=None, min_length=1, max_length=100)


class RedemptionPublic(BaseModel):
    redemption_id: UUID
    code: str
    original_subtotal: str
    discount_amount: str
    final_total: str
    free_shipping: bool = False

    @classmethod
    def from_receipt(cls, receipt: ConventionalReceipt) -> RedemptionPublic:
        return cls(
            redemption_id=receipt.redemption_id,
            code=receipt.code,
            original_subtotal=str(receipt.original_subtotal.quantize(CENT)),
            discount_amount=str(receipt.discount_amount.quantize(CENT)),
            final_total=str(receipt.final_total.quantize(CENT)),
        )


class ApiKeys:
    """Bearer key -> retailer id, looked up once per key and then served from memory."""

    def __init__(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]) -> None:
        self.pool = pool
        self._known: dict[str, UUID] = {}

    async def authenticate(self, authorization: str | None) -> UUID:
        scheme, _, api_key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not api_key.strip():
            raise RedemptionRefused(401, "UNAUTHENTICATED", "Send 'Authorization: Bearer <api key>'.")
        key_hash = hash_key(api_key.strip())
        retailer_id = self._known.get(key_hash)
        if retailer_id is None:
            async with self.pool.connection() as conn:
                cur = await conn.execute("SELECT retailer_id FROM conv_api_keys WHERE key_hash = %s", (key_hash,))
                row = await cur.fetchone()
            if row is None:
                raise RedemptionRefused(401, "UNAUTHENTICATED", "The API key is not valid.")
            retailer_id = self._known[key_hash] = row[0]
        return retailer_id


class DirectRoute:
    """Serves one route straight from the outermost middleware (see api.app.RequestContext)."""

    def __init__(self, app: ASGIApp, method: str, path: str, route: ASGIApp) -> None:
        self.app = app
        self.method = method
        self.path = path
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == self.method and scope["path"] == self.path:
            await self.route(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(database_url: str | None = None, pool_size: int | None = None) -> FastAPI:
    """The ASGI app (``uvicorn --factory bench.conventional:create_app``); DATABASE_URL, CONV_POOL_SIZE."""
    url = database_url or os.environ["DATABASE_URL"]
    size = pool_size or int(os.environ.get("CONV_POOL_SIZE", DEFAULT_POOL_SIZE))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        install(url)
        async with open_pool(url, size) as pool:
            await pool.wait()
            app.state.pool = pool
            app.state.api_keys = ApiKeys(pool)
            yield

    app = FastAPI(
        title="conventional coupon service (benchmark baseline)",
        lifespan=lifespan,
        # As the ledger's app: no OpenTelemetry provider is configured, so skip the per-request check.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )

    def refused_response(error: RedemptionRefused) -> JSONResponse:
        body: dict[str, Any] = {"error": {"code": error.code, "message": error.message, "details": error.details}}
        return JSONResponse(body, status_code=error.status)

    @app.exception_handler(RedemptionRefused)
    async def refused(_: Request, error: RedemptionRefused) -> JSONResponse:
        return refused_response(error)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/coupons/apply", status_code=201, response_model=None)
    async def apply_coupon(request: Request) -> Response:
        # The same lean route as the ledger's: the request read directly with the same kind of
        # pydantic model, no dependency resolution, the response serialized once.
        retailer_id = await request.app.state.api_keys.authenticate(request.headers.get("authorization"))
        try:
            body = ApplyRequest.model_validate_json(await request.body())
        except ValidationError as error:
            raise RedemptionRefused(422, "VALIDATION_FAILED", "The request is not valid.") from error
        idempotency_key = request.headers.get("idempotency-key")
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
            raise RedemptionRefused(422, "VALIDATION_FAILED", "Idempotency-Key must be 1-255 characters.")
        receipt = await apply(
            request.app.state.pool, retailer_id, body.code, body.subtotal, idempotency_key, body.order_id
        )
        headers = {"Idempotent-Replayed": "true"} if receipt.replayed else None
        public = RedemptionPublic.from_receipt(receipt)
        return Response(public.model_dump_json(), status_code=201, media_type="application/json", headers=headers)

    async def apply_directly(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await apply_coupon(request)
        except RedemptionRefused as error:
            response = refused_response(error)
        await response(scope, receive, send)

    # As the ledger's app does: the route is served without the router and the layers between.
    app.add_middleware(DirectRoute, method="POST", path="/v1/coupons/apply", route=apply_directly)
    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the conventional coupon service (reads DATABASE_URL).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--pool-size", type=int, default=None)
    args = parser.parse_args(argv)
    if args.pool_size is not None:
        os.environ["CONV_POOL_SIZE"] = str(args.pool_size)
    # No access log, as `coupon-ledger serve` under bench/harness.py: a line per request costs both the same.
    uvicorn.run("bench.conventional:create_app", factory=True, host=args.host, port=args.port, access_log=False)


if __name__ == "__main__":
    main()
