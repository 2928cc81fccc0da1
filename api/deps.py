"""Typed dependencies: the shared services and the authenticated retailer.

Both are async so that an async route (the write path) runs without borrowing a thread.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from api.services import Services


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_retailer_id(
    services: ServicesDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> UUID:
    scheme, _, api_key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not api_key.strip():
        raise ApiError("UNAUTHENTICATED", "Send 'Authorization: Bearer <api key>'.")
    api_key = api_key.strip()
    # A key seen before is answered from memory, without a thread; a new one is looked up.
    retailer_id = services.retailers.known(api_key) or await run_in_threadpool(services.retailers.authenticate, api_key)
    if retailer_id is None:
        raise ApiError("UNAUTHENTICATED", "The API key is not valid.")
    return retailer_id


RetailerDep = Annotated[UUID, Depends(get_retailer_id)]
