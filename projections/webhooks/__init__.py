"""Webhooks from the event log: the projection that makes the outbox (projection.py), the
dispatcher that sends it (dispatcher.py), the endpoints and deliveries the API reads (store.py)."""

from __future__ import annotations

from projections.fan_out import ProjectionSpec
from projections.webhooks.dispatcher import Dispatcher, DispatchSettings
from projections.webhooks.projection import WebhooksProjection, WebhooksView

WEBHOOKS_LEADER_LOCK_KEY = 0x77686F6F6B73  # "whooks"
# A delivery is made at most this much later, in exchange for one outbox transaction per this
# many seconds of events rather than one per handful: under load it competes with the API for CPU.
WEBHOOKS_LINGER_SECONDS = 0.2

# Run by the projections' leader (projections/leader.py), from the subscription the coupons
# projection reads too; its own lock elects the one process per database that projects it.
WEBHOOKS_PROJECTION = ProjectionSpec(
    WebhooksProjection, WebhooksView, WEBHOOKS_LEADER_LOCK_KEY, linger=WEBHOOKS_LINGER_SECONDS
)


class Webhooks:
    """The sending of one process's webhooks: its dispatcher (every such process sends; SKIP
    LOCKED shares the deliveries out). The outbox is made by WEBHOOKS_PROJECTION."""

    def __init__(self, conninfo: str, settings: DispatchSettings) -> None:
        self.dispatcher = Dispatcher(conninfo, settings)

    def start(self) -> Webhooks:
        self.dispatcher.start()
        return self

    def stop(self) -> None:
        self.dispatcher.stop()
