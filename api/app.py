"""The FastAPI application: routers, one error shape, request ids, a body-size limit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request, Response
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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.open(settings)
        app.state.services = services
        try:
            yield
        finally:
            services.close()

    app = FastAPI(
        title="coupon-ledger",
        version="0.1.0",
        description="Event-sourced coupon engine for Cartly retailers.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.state.max_body_bytes = settings.max_body_bytes
    # Inside the http middleware below, so its 413 reaches the error handlers as such.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    @app.middleware("http")
    async def request_context(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            response: Response = payload_too_large(request)
        else:
            try:
                response = await call_next(request)
            except Exception:
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                response = error_response(request, "INTERNAL_ERROR", "An unexpected error occurred.")
        response.headers["X-Request-ID"] = request.state.request_id
        return response

    app.include_router(coupons.router)
    app.include_router(checkout.router)
    app.include_router(ops.router)
    return app
