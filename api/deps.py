"""Typed dependencies: the authenticated caller (its retailer) and the shared services.

One dependency for both, and async, so that a route costs one dependency to solve and an async
route (the write path) runs without borrowing a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from api.services import Services


@dataclass(frozen=True)
class Caller:
    retailer_id: UUID
    services: Services


async def get_caller(request: Request) -> Caller:
    # Read straight from the headers: a declared Header parameter costs FastAPI more per request
    # than the rest of authentication, and this one is not part of the documented parameters.
    authorization = request.headers.get("authorization")
    services: Services = request.app.state.services
    scheme, _, api_key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not api_key.strip():
        raise ApiError("UNAUTHENTICATED", "Send 'Authorization: Bearer <api key>'.")
    api_key = api_key.strip()
    # A key seen before is answered from memory, without a thread; a new one is looked up.
    retailer_id = services.retailers.known(api_key) or await run_in_threadpool(services.retailers.authenticate, api_key)
    if retailer_id is None:
        raise ApiError("UNAUTHENTICATED", "The API key is not valid.")
    return Caller(retailer_id, services)


CallerDep = Annotated[Caller, Depends(get_caller)]
