"""The FastAPI application: routers, one error shape, request ids, a body-size limit."""

from __future__ import annotations

import gc
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response, install_error_handlers, payload_too_large
from api.routes import checkout, coupons, ops
from api.services import Services
from api.settings import Settings

log = logging.getLogger(__name__)


class BodySizeLimit:
    """Counts body bytes as they arrive, so a chunked body cannot pass the limit either."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413)  # rendered by the error handlers
            return message

        await self.app(scope, counting_receive, send)


class RequestContext:
    """Gives each request an id (the client's X-Request-ID, else a new one), echoes it on the
    response, refuses a declared body over the limit, and answers an unexpected error with the
    error shape instead of a trace. Plain ASGI, so it costs one function call per request."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        # Not uuid4: its os.urandom call releases the GIL, and taking it back from a busy writer
        # thread can cost milliseconds. A request id needs to be unique, not secret.
        request_id = request.headers.get("x-request-id") or f"{random.getrandbits(128):032x}"
        request.state.request_id = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await payload_too_large(request)(scope, receive, send_with_id)
            return
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            if started:
                raise
            response = error_response(request, "INTERNAL_ERROR", "An unexpected error occurred.")
            await response(scope, receive, send_with_id)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.open(settings)
        app.state.services = services
        # Everything built so far lives as long as the process: keep the collector from scanning
        # it again and again, which showed as pauses of 20-60 ms under load. A request's objects
        # die young, so collect the youngest generation every 10,000 net allocations, not 700:
        # GC time per 20,000 redemptions fell from about 1 s to 0.05 s in bench runs.
        gc.freeze()
        gc.set_threshold(10_000, 10, 10)
        try:
            yield
        finally:
            services.close()

    app = FastAPI(
        title="coupon-ledger",
        version="0.1.0",
        description="Event-sourced coupon engine for Cartly retailers.",
        lifespan=lifespan,
        # FastAPI's OpenTelemetry hooks: no provider is configured, so skip the per-request check.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    app.state.max_body_bytes = settings.max_body_bytes
    # Inside the http middleware below, so its 413 reaches the error handlers as such.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    # Outermost of ours: every response, the 413 and 500 ones included, carries X-Request-ID.
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes)

    app.include_router(coupons.router)
    app.include_router(checkout.router)
    app.include_router(ops.router)
    return app
