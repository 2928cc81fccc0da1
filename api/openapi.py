"""The OpenAPI document, made truthful: the one error shape as a component, every status an
operation can answer (with the error codes each may carry), the bearer security scheme, and
the Swagger UI and ReDoc pages served from local assets (the fastapi-offline wheel ships them).

Routes declare what is particular to them with ``errors({status: [codes]})``; what every
route shares is added here from the route's shape: 401 for every ``/v1`` route (all need a
bearer key), 422 VALIDATION_FAILED wherever a parameter or a body is read, 413 wherever a body
is. So a route added later is documented the same way without more code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from api.deps import publishable_key_may_call
from api.errors import STATUS_BY_CODE
from api.schemas import ApplyRequest, Error
from ledger.errors import refusal_codes

ERROR_REF = {"$ref": "#/components/schemas/Error"}
SECURITY_SCHEME = "bearerAuth"
DOCS_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs/assets"
EXAMPLE_REQUEST_ID = "5f0c6a3e9b1d4c7a8e2f1b0d3c4a5e6f"
STATUS_TEXT = {
    401: "Missing or unknown API key",
    403: "Not allowed with this key",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Request body too large",
    422: "Not valid, or a coupon rule refused it",
    429: "Too many requests",
    503: "Temporarily unavailable; retry after Retry-After seconds",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "Always Bearer.", "schema": {"type": "string"}}}


def coupon_refusals(*left_out: str) -> list[str]:
    """The 422 codes with which the rules of a coupon may refuse an order, in the order the rules
    are checked (ledger.errors.REFUSALS; COUPON_NOT_FOUND is a 404), but ``left_out``."""
    return [code for code in refusal_codes() if STATUS_BY_CODE.get(code, 422) == 422 and code not in left_out]


# What the rules of a coupon may refuse, for a route's errors({422: [...]}).
REFUSED = coupon_refusals()


def errors(by_status: dict[int, list[str]]) -> dict[int | str, dict[str, Any]]:
    """The error responses particular to a route: ``{404: ["COUPON_NOT_FOUND"], ...}``; the
    document builder adds the content, the description and what every route shares."""
    return {status: {"description": STATUS_TEXT[status], "x-error-codes": codes} for status, codes in by_status.items()}


def _add_codes(responses: dict[str, Any], status: int, codes: list[str]) -> None:
    response = responses.setdefault(str(status), {"description": STATUS_TEXT[status]})
    known = response.get("x-error-codes", [])
    response["x-error-codes"] = [*codes, *[c for c in known if c not in codes]]


def _error_example(code: str) -> dict[str, Any]:
    """An example body of one error code (what Swagger UI and ReDoc show for the status)."""
    details: dict[str, Any] = {}
    if code == "VALIDATION_FAILED":
        details = {"errors": [{"field": "subtotal", "message": "must not be negative"}]}
    elif code in ("RATE_LIMITED", "SERVICE_UNAVAILABLE"):
        details = {"retry_after": 1}
    message = code.replace("_", " ").capitalize() + "."  # COUPON_NOT_FOUND: "Coupon not found."
    body = {"code": code, "message": message, "details": details, "request_id": EXAMPLE_REQUEST_ID}
    return {"summary": code, "value": {"error": body}}


def _finish_error_response(status: int, response: dict[str, Any]) -> None:
    codes = response.get("x-error-codes", [])
    response["description"] = f"{STATUS_TEXT[status]}. Error codes: {', '.join(codes)}."
    # One example per code the route lists for the status: without them the documentation
    # shows the Error schema's own example (COUPON_NOT_FOUND) under every status.
    examples = {code: _error_example(code) for code in codes}
    response["content"] = {"application/json": {"schema": ERROR_REF, "examples": examples}}
    if status == 401:
        response["headers"] = WWW_AUTHENTICATE
    if status in (429, 503) or "IDEMPOTENCY_KEY_IN_USE" in codes:  # 409 while the key's first request runs
        response["headers"] = RETRY_AFTER


def build_openapi(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        servers=app.servers,
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    # The error shape, and the body of the apply route (which reads its body itself).
    for model in (Error, ApplyRequest):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in model_schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas[model.__name__] = model_schema
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "A retailer's key: `Authorization: Bearer <key>`. A secret API key (`cl_…`) may call every "
                "route; a publishable key (`pk_…`, safe in a web page) only the storefront and "
                "checkout-session routes (any other route answers it 403 FORBIDDEN)."
            ),
        }
    }
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            if _is_fastapi_422(responses.get("422")):
                del responses["422"]  # FastAPI's {"detail": ...}, which this API never answers
            if path.startswith("/v1/"):
                operation["security"] = [{SECURITY_SCHEME: []}]
                _add_codes(responses, 401, ["UNAUTHENTICATED"])
                if not publishable_key_may_call(path):
                    _add_codes(responses, 403, ["FORBIDDEN"])
                # Every /v1 route reads the database: while it is unreachable, 503 with Retry-After.
                _add_codes(responses, 503, ["SERVICE_UNAVAILABLE"])
            for parameter in operation.get("parameters", []):
                parameter["schema"] = _without_null(parameter.get("schema", {}))
            reads_input = any(p.get("in") != "path" for p in operation.get("parameters", []))
            if reads_input or operation.get("requestBody"):
                _add_codes(responses, 422, ["VALIDATION_FAILED"])
            if operation.get("requestBody"):
                _add_codes(responses, 413, ["PAYLOAD_TOO_LARGE"])
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    _finish_error_response(int(status), response)
            operation["responses"] = dict(sorted(responses.items()))
    return schema


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without pydantic's ``anyOf [..., null]`` for an optional value: a
    query string or header is absent or text, never JSON null."""
    variants = schema.get("anyOf")
    if not variants or {"type": "null"} not in variants:
        return schema
    rest = [v for v in variants if v != {"type": "null"}]
    merged = {k: v for k, v in schema.items() if k != "anyOf"}
    if len(rest) == 1:
        return {**rest[0], **merged}
    return {**merged, "anyOf": rest}


def _is_fastapi_422(response: dict[str, Any] | None) -> bool:
    return response is not None and "x-error-codes" not in response


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from the wheel's assets: nothing is loaded from another host."""
    app.mount(ASSETS_URL, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            # No badge from the public validator; keep the key entered with Authorize on reload.
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
