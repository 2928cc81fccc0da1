"""One error shape for every 4xx and 5xx: {"error": {code, message, details, request_id}}.

Domain errors are mapped to HTTP here and nowhere else.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from api.access import route_template
from ledger.errors import LedgerError
from ledger.event_store import DATABASE_UNAVAILABLE, is_contention, is_database_unavailable

log = logging.getLogger(__name__)

STATUS_BY_CODE = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "COUPON_NOT_FOUND": 404,
    "REDEMPTION_NOT_FOUND": 404,
    "RESERVATION_NOT_FOUND": 404,
    "CAMPAIGN_NOT_FOUND": 404,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "COUPON_CODE_TAKEN": 409,
    "IDEMPOTENCY_KEY_REUSED": 409,
    "IDEMPOTENCY_KEY_IN_USE": 409,
    "SESSION_COMPLETED": 409,
    "OUT_OF_STOCK": 409,
    "INVALID_TRANSITION": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "CLIENT_DISCONNECTED": 400,
    "RATE_LIMITED": 429,
    "INTERNAL_ERROR": 500,
    "SERVICE_UNAVAILABLE": 503,
}


class ApiError(LedgerError):
    """An error raised by the API layer itself (authentication, checkout, paging)."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.code = code


class ErrorJSONResponse(JSONResponse):
    """JSON with non-ASCII characters escaped: an error may quote text a client sent, and text
    that is not valid Unicode (a lone surrogate) must still give a valid response."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(
    request: Request,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    status = STATUS_BY_CODE.get(code, 422)
    headers = dict(headers or {})
    details = dict(details or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status in (429, 503) or "retry_after" in details:
        headers["Retry-After"] = str(details.get("retry_after", 1))
    body = {
        "error": {
            "code": code,
            "message": message,
            "details": details,
            "request_id": getattr(request.state, "request_id", None),
        }
    }
    return ErrorJSONResponse(body, status_code=status, headers=headers)


def payload_too_large(request: Request) -> JSONResponse:
    max_bytes = request.app.state.max_body_bytes
    return error_response(
        request, "PAYLOAD_TOO_LARGE", f"Request bodies are limited to {max_bytes} bytes.", {"max_bytes": max_bytes}
    )


def _field(error: Mapping[str, Any]) -> str:
    if error.get("type") in ("json_invalid", "json_type"):
        return "body"  # not the character position pydantic puts in loc
    parts = [str(p) for p in error["loc"]]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def _message(error: Mapping[str, Any]) -> str:
    """pydantic's message in plain words: without its "Value error, " prefix."""
    message = str(error.get("msg", "is not valid"))
    for prefix in PYDANTIC_PREFIXES:
        message = message.removeprefix(prefix)
    if error.get("type") == "json_invalid":
        message = f"is not valid JSON ({error.get('ctx', {}).get('error', message)})"
    return message


def validation_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """pydantic's errors as the contract's [{field, message}]."""
    return [{"field": _field(e), "message": _message(e)} for e in errors]


HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for the request's path: those of its most literal
    path template (/v1/coupons/apply before /v1/coupons/{code}: it allows POST, though GET there
    reads the coupon APPLY). A path the document leaves out (/docs, /openapi.json) allows every
    method a route of the app serves it with."""
    path = request.url.path
    templates: dict[str, dict[str, Any]] = request.app.openapi().get("paths", {})
    for template in sorted(templates, key=lambda t: t.count("{")):
        if _template_pattern(template).fullmatch(path):
            return [method for method in HTTP_METHODS if method.lower() in templates[template]]
    routes = request.app.router.routes
    return [
        method
        for method in HTTP_METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]


@functools.cache
def _template_pattern(template: str) -> re.Pattern[str]:
    """A path template of the document as a pattern: ``{name}`` stands for one path segment."""
    parts = re.split(r"\{[^}]*\}", template)
    return re.compile("[^/]+".join(re.escape(part) for part in parts))


def is_client_disconnect(exc: BaseException) -> bool:
    """The client went away before sending its whole body (FastAPI wraps it in a 400)."""
    return isinstance(exc, ClientDisconnect) or isinstance(exc.__cause__, ClientDisconnect)


async def render_error(request: Request, exc: Exception) -> JSONResponse:
    """The error response for any exception a request raised: the one mapping, used by the
    handlers installed on the app and by the routes served directly (api.app.RequestContext)."""
    if isinstance(exc, LedgerError):
        return error_response(request, exc.code, exc.message, exc.details)
    if is_client_disconnect(exc):
        # Nobody is left to read the answer, and nothing went wrong here: no trace in the log.
        log.debug("client disconnected during %s %s", request.method, route_template(request.scope))
        return error_response(request, "CLIENT_DISCONNECTED", "The client disconnected before sending the whole body.")
    if isinstance(exc, RequestValidationError):
        errors = validation_errors(exc.errors())
        return error_response(request, "VALIDATION_FAILED", "The request is not valid.", {"errors": errors})
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 404:
            return error_response(request, "NOT_FOUND", f"No route for {request.method} {request.url.path}.")
        if exc.status_code == 405:
            allow = ", ".join(allowed_methods(request)) or (exc.headers or {}).get("Allow", "")
            return error_response(
                request,
                "METHOD_NOT_ALLOWED",
                f"{request.method} is not allowed here.",
                {"allowed": allow.split(", ")},
                headers={"Allow": allow},
            )
        if exc.status_code == 413:
            return payload_too_large(request)
        if exc.status_code < 500:  # FastAPI's 400 for a body it cannot read (not UTF-8, not JSON)
            errors = [{"field": "body", "message": f"cannot be read ({exc.detail})"}]
            return error_response(request, "VALIDATION_FAILED", "The request is not valid.", {"errors": errors})
        return error_response(request, "INTERNAL_ERROR", "An unexpected error occurred.")
    if is_contention(exc):
        # A lock not granted within lock_timeout, a deadlock, a cancelled statement: busy, not down.
        log.warning("lock contention on %s %s: %s", request.method, route_template(request.scope), exc)
        return error_response(
            request,
            "SERVICE_UNAVAILABLE",
            "The database could not give this request its locks in time; retry shortly.",
            {"retry_after": 1, "reason": "lock_contention"},
        )
    if is_database_unavailable(exc):
        # The database is down, restarting or out of connections (psycopg's or the library's
        # OperationalError or InterfaceError, a pool timeout): the client should retry, not give up.
        log.warning("database unavailable on %s %s: %s", request.method, route_template(request.scope), exc)
        return error_response(
            request, "SERVICE_UNAVAILABLE", "The database is unavailable; retry shortly.", {"retry_after": 1}
        )
    log.exception("unhandled error on %s %s", request.method, route_template(request.scope), exc_info=exc)
    return error_response(request, "INTERNAL_ERROR", "An unexpected error occurred.")


def install_error_handlers(app: FastAPI) -> None:
    # The database errors by class, not only through the catch-all Exception handler: that one's
    # middleware re-raises after answering, which would log each request of an outage as a crash.
    for handled in (LedgerError, RequestValidationError, StarletteHTTPException, *DATABASE_UNAVAILABLE, Exception):
        app.add_exception_handler(handled, render_error)
