"""Reads of the read models reflect every write acknowledged before the request: they wait until the
projection has processed the event log's head, or answer 503. With a replica (DATABASE_REPLICA_URL)
they read from it once it has replayed that far (api/replica.py), else from the primary."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from api.errors import ApiError
from api.services import Services
from projections.coupons import CouponsView

T = TypeVar("T")


def read_model(services: Services, what: str, query: Callable[[CouponsView], T]) -> T:
    """``query`` run on a view holding every event stored before this call: the replica's when it
    has replayed that far within the bound (and answers), else the primary's. ``what`` names the
    list in the 503 raised when the projection has stopped or cannot catch up in time."""
    head = log_head(services, what)

    def on_primary() -> T:
        wait_on_primary(services, what, head)
        return query(services.coupons_view)

    replica = services.replica
    if replica is not None and replica.has_replayed(head):
        return replica.read_or(lambda: query(replica.view), on_primary)
    return on_primary()


def read_view(services: Services, what: str) -> CouponsView:
    """The view a streamed read (which cannot start again elsewhere once it has begun) reads from:
    the replica's when it has replayed every event stored before this call, else the primary's,
    once it holds them."""
    head = log_head(services, what)
    if services.replica is not None and services.replica.has_replayed(head):
        return services.replica.view
    wait_on_primary(services, what, head)
    return services.coupons_view


def log_head(services: Services, what: str) -> int | None:
    """The event log's head, from the primary (None: no event yet): what a read must reflect. 503
    if projecting stopped."""
    if services.leader is not None and services.leader.stopped_on is not None:
        raise ApiError(
            "SERVICE_UNAVAILABLE",
            f"{what} cannot be listed: the read model stopped at an event it cannot hold (see the server log).",
            retry_after=60,
        )
    return services.ledger.recorder.max_notification_id()


def wait_on_primary(services: Services, what: str, head: int | None) -> None:
    try:
        services.coupons_view.wait_until_processed(
            services.ledger.name, head, timeout=services.settings.read_wait_timeout
        )
    except TimeoutError:
        raise ApiError(
            "SERVICE_UNAVAILABLE", f"{what} are catching up with recent writes; retry shortly.", retry_after=1
        ) from None
