"""The FastAPI application: routers, one error shape, request ids, a body-size limit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from api.errors import error_response, install_error_handlers
from api.routes import checkout, coupons, ops
from api.services import Services
from api.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

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

    @app.middleware("http")
    async def request_context(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            response: Response = error_response(
                request,
                "PAYLOAD_TOO_LARGE",
                f"Request bodies are limited to {settings.max_body_bytes} bytes.",
                {"max_bytes": settings.max_body_bytes},
            )
        else:
            response = await call_next(request)
        response.headers["X-Request-ID"] = request.state.request_id
        return response

    app.include_router(coupons.router)
    app.include_router(checkout.router)
    app.include_router(ops.router)
    return app
