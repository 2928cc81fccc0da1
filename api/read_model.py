"""Reads of the `coupons` read model reflect every write acknowledged before the request: wait
until the projection has processed the event log's head, or answer 503."""

from __future__ import annotations

from api.errors import ApiError
from api.services import Services


def wait_for_coupons_view(services: Services, what: str) -> None:
    """Return once the read model holds every event stored so far; ``what`` names the list in the
    503 it raises when the projection has stopped or cannot catch up in time."""
    if services.leader is not None and services.leader.stopped_on is not None:
        raise ApiError(
            "SERVICE_UNAVAILABLE",
            f"{what} cannot be listed: the read model stopped at an event it cannot hold (see the server log).",
            retry_after=60,
        )
    head = services.ledger.recorder.max_notification_id()
    try:
        services.coupons_view.wait_until_processed(
            services.ledger.name, head, timeout=services.settings.read_wait_timeout
        )
    except TimeoutError:
        raise ApiError(
            "SERVICE_UNAVAILABLE", f"{what} are catching up with recent writes; retry shortly.", retry_after=1
        ) from None
