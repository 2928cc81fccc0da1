"""Typed dependencies: the shared services and the authenticated retailer."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Header, Request

from api.errors import ApiError
from api.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_retailer_id(
    services: ServicesDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> UUID:
    scheme, _, api_key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not api_key.strip():
        raise ApiError("UNAUTHENTICATED", "Send 'Authorization: Bearer <api key>'.")
    retailer_id = services.retailers.authenticate(api_key.strip())
    if retailer_id is None:
        raise ApiError("UNAUTHENTICATED", "The API key is not valid.")
    return retailer_id


RetailerDep = Annotated[UUID, Depends(get_retailer_id)]
