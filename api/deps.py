"""Typed dependencies: the authenticated caller (its retailer and key kind) and the shared services.

One dependency for both, and async, so that a route costs one dependency to solve and an async
route (the write path) runs without borrowing a thread.

Two dependencies, by who may call: `CallerDep` (every management route) takes a secret key only
and answers a publishable one 403 FORBIDDEN; `StorefrontCallerDep` (the storefront and
checkout-session routes) takes either kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from api.retailers import SECRET, KeyKind
from api.services import Services
from ledger.actors import Actor, set_actor

# The routes a publishable key may call, by path: the storefront's and the checkout sessions'.
# Documentation (api/openapi.py) and tests use it; the routes enforce it by their dependency.
STOREFRONT_PREFIX = "/v1/storefront/"
SESSIONS_PATH = "/v1/checkout/sessions"


def publishable_key_may_call(path: str) -> bool:
    """Whether a route of this path (as declared, ``{id}`` and all) takes a publishable key."""
    return path.startswith(STOREFRONT_PREFIX) or path == SESSIONS_PATH or path.startswith(SESSIONS_PATH + "/")


# How much of a request id (the client's X-Request-ID, or ours) events record.
REQUEST_ID_KEPT = 64


@dataclass(frozen=True)
class Caller:
    retailer_id: UUID
    services: Services
    kind: KeyKind = SECRET


def _bearer_key(request: Request) -> str:
    # Read straight from the headers: a declared Header parameter costs FastAPI more per request
    # than the rest of authentication, and this one is not part of the documented parameters.
    scheme, _, api_key = (request.headers.get("authorization") or "").partition(" ")
    api_key = api_key.strip()
    if scheme.lower() != "bearer" or not api_key:
        raise ApiError("UNAUTHENTICATED", "Send 'Authorization: Bearer <api key>'.")
    return api_key


def _invalid_key() -> ApiError:
    return ApiError("UNAUTHENTICATED", "The API key is not valid.")


async def get_storefront_caller(request: Request) -> Caller:
    """The caller of a storefront or checkout-session route: a publishable or a secret key."""
    api_key = _bearer_key(request)
    services: Services = request.app.state.services
    # A key seen before is answered from memory, without a thread; a new one is looked up.
    key = services.retailers.known(api_key) or await run_in_threadpool(services.retailers.authenticate, api_key)
    if key is None:
        raise _invalid_key()
    # Who acts in this request: every event its commands make records it.
    set_actor(Actor(f"{key.kind}_key", key.key_id, request.state.request_id[:REQUEST_ID_KEPT]))
    request.state.key_id = key.key_id  # for the access line (api/access.py): the key's public id
    return Caller(key.retailer_id, services, key.kind)


async def get_caller(request: Request) -> Caller:
    """The caller of a management route: a secret key; a publishable one is 403 FORBIDDEN."""
    caller = await get_storefront_caller(request)
    if caller.kind != SECRET:
        raise ApiError(
            "FORBIDDEN",
            "This route needs a secret API key (cl_...). A publishable key (pk_...) may call only "
            "the storefront (/v1/storefront/...) and checkout-session (/v1/checkout/sessions...) routes.",
            key_kind=caller.kind,
            required_key_kind=SECRET,
        )
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]
StorefrontCallerDep = Annotated[Caller, Depends(get_storefront_caller)]
