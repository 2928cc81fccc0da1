"""/v1/webhooks: a retailer's webhook endpoints (create, list, read, delete) and the deliveries
made for them (list, read, queue again). Secret key only. Another retailer's endpoint or delivery
is 404 NOT_FOUND, like a missing one."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query

from api.deps import CallerDep
from api.errors import ApiError
from api.openapi import errors
from api.pagination import Cursor, bad_cursor, decode_cursor, decode_time_cursor, encode_cursor, encode_time_cursor
from api.schemas import MAX_BIGINT
from api.schemas.webhooks import (
    DeliveryPage,
    DeliveryPublic,
    DeliveryStatus,
    EndpointCreate,
    EndpointCreated,
    EndpointPage,
    EndpointPublic,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

UUID_PATH = {"format": "uuid", "examples": ["7d3a5c9e-1f2b-4c8d-9e0a-3b6f1d2c4e5a"]}
EndpointIdPath = Annotated[
    str, Path(description="The endpoint's id; anything else is NOT_FOUND.", json_schema_extra=UUID_PATH)
]
DeliveryIdPath = Annotated[
    str, Path(description="The delivery's id; anything else is NOT_FOUND.", json_schema_extra=UUID_PATH)
]
NOT_FOUND = {404: ["NOT_FOUND"]}
MAX_SMALLINT = 32_767


def _endpoint_not_found(raw: str) -> ApiError:
    return ApiError("NOT_FOUND", f"Webhook endpoint {raw} does not exist.", endpoint_id=raw)


def _delivery_not_found(raw: str) -> ApiError:
    return ApiError("NOT_FOUND", f"Webhook delivery {raw} does not exist.", delivery_id=raw)


def decode_delivery_cursor(cursor: str) -> tuple[int, int, UUID]:
    """(position, ordinal, id) of the previous page's last delivery; 422 naming cursor if it is not one."""
    parts = decode_cursor(cursor).split("|")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts[:2]):
        raise bad_cursor()
    position, ordinal = int(parts[0]), int(parts[1])
    try:
        delivery_id = UUID(parts[2])
    except ValueError:
        raise bad_cursor() from None
    if position > MAX_BIGINT or ordinal > MAX_SMALLINT:
        raise bad_cursor()
    return position, ordinal, delivery_id


def _uuid(raw: str, not_found: ApiError) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise not_found from None


@router.post("/endpoints", status_code=201, responses=errors({}))
def create_endpoint(body: EndpointCreate, caller: CallerDep) -> EndpointCreated:
    """A new endpoint: the events of the kinds it names, made after now, are POSTed to its URL,
    signed with its secret (shown only in this answer)."""
    store = caller.services.webhook_store
    row = store.create_endpoint(caller.retailer_id, body.url, list(body.events), body.description)
    return EndpointCreated.from_new(row)


@router.get("/endpoints")
def list_endpoints(
    caller: CallerDep, limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Cursor = None
) -> EndpointPage:
    """The caller's endpoints, deleted ones too, oldest first; a page at a time."""
    after = decode_time_cursor(cursor) if cursor else None
    rows = caller.services.webhook_store.endpoints(caller.retailer_id, after, limit + 1)
    page = rows[:limit]
    next_cursor = encode_time_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return EndpointPage(data=[EndpointPublic.from_row(r) for r in page], next_cursor=next_cursor)


@router.get("/endpoints/{endpoint_id}", responses=errors(NOT_FOUND))
def get_endpoint(endpoint_id: EndpointIdPath, caller: CallerDep) -> EndpointPublic:
    """One of the caller's endpoints (its secret is not shown again)."""
    row = caller.services.webhook_store.endpoint(
        caller.retailer_id, _uuid(endpoint_id, _endpoint_not_found(endpoint_id))
    )
    if row is None:
        raise _endpoint_not_found(endpoint_id)
    return EndpointPublic.from_row(row)


@router.delete("/endpoints/{endpoint_id}", responses=errors(NOT_FOUND))
def delete_endpoint(endpoint_id: EndpointIdPath, caller: CallerDep) -> EndpointPublic:
    """Stop delivering to the endpoint: no delivery is made for it any more and those pending are
    marked failed. It and its deliveries stay listed (disabled_at set). Repeating is harmless."""
    row = caller.services.webhook_store.disable_endpoint(
        caller.retailer_id, _uuid(endpoint_id, _endpoint_not_found(endpoint_id))
    )
    if row is None:
        raise _endpoint_not_found(endpoint_id)
    return EndpointPublic.from_row(row)


@router.get("/deliveries")
def list_deliveries(
    caller: CallerDep,
    endpoint_id: Annotated[UUID | None, Query(description="Only the deliveries to this endpoint.")] = None,
    status: Annotated[DeliveryStatus | None, Query(description="Only the deliveries in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> DeliveryPage:
    """The caller's deliveries in the order of the events they carry, with their attempts and last
    outcome; a page at a time."""
    after = decode_delivery_cursor(cursor) if cursor else None
    rows = caller.services.webhook_store.deliveries(caller.retailer_id, endpoint_id, status, after, limit + 1)
    page = rows[:limit]
    last = page[-1] if page else None
    next_cursor = encode_cursor(f"{last.position}|{last.ordinal}|{last.id}") if last and len(rows) > limit else None
    return DeliveryPage(data=[DeliveryPublic.from_row(r) for r in page], next_cursor=next_cursor)


@router.get("/deliveries/{delivery_id}", responses=errors(NOT_FOUND))
def get_delivery(delivery_id: DeliveryIdPath, caller: CallerDep) -> DeliveryPublic:
    row = caller.services.webhook_store.delivery(
        caller.retailer_id, _uuid(delivery_id, _delivery_not_found(delivery_id))
    )
    if row is None:
        raise _delivery_not_found(delivery_id)
    return DeliveryPublic.from_row(row)


@router.post(
    "/deliveries/{delivery_id}/resend", status_code=202, responses=errors({**NOT_FOUND, 409: ["INVALID_TRANSITION"]})
)
def resend_delivery(delivery_id: DeliveryIdPath, caller: CallerDep) -> DeliveryPublic:
    """Queue the delivery again now, with the same event id and body (succeeded or failed, it is
    pending again, retried for a new window). Its endpoint deleted: 409 INVALID_TRANSITION."""
    store = caller.services.webhook_store
    parsed = _uuid(delivery_id, _delivery_not_found(delivery_id))
    row = store.resend(caller.retailer_id, parsed)
    if row is None:
        if store.delivery(caller.retailer_id, parsed) is None:
            raise _delivery_not_found(delivery_id)
        raise ApiError(
            "INVALID_TRANSITION",
            f"Webhook delivery {delivery_id} cannot be sent again: its endpoint was deleted.",
            delivery_id=delivery_id,
        )
    return DeliveryPublic.from_row(row)
