"""Webhooks from the event log: the projection that makes the outbox (projection.py), the
dispatcher that sends it (dispatcher.py), the endpoints and deliveries the API reads (store.py)."""

from __future__ import annotations

from eventsourcing.utils import EnvType

from projections.runner import ProjectionLeader
from projections.webhooks.dispatcher import Dispatcher, DispatchSettings
from projections.webhooks.projection import WebhooksProjection, WebhooksView

WEBHOOKS_LEADER_LOCK_KEY = 0x77686F6F6B73  # "whooks"
# A delivery is made at most this much later, in exchange for one outbox transaction per this
# many seconds of events rather than one per handful: under load it competes with the API for CPU.
WEBHOOKS_LINGER_SECONDS = 0.2


class Webhooks:
    """The webhooks of one process: its projection's leader (one projects per database) and the
    dispatcher (every such process sends; SKIP LOCKED shares the deliveries out)."""

    def __init__(self, conninfo: str, env: EnvType, settings: DispatchSettings) -> None:
        self.leader = ProjectionLeader(
            conninfo,
            env,
            projection_class=WebhooksProjection,
            view_class=WebhooksView,
            lock_key=WEBHOOKS_LEADER_LOCK_KEY,
            linger=WEBHOOKS_LINGER_SECONDS,
        )
        self.dispatcher = Dispatcher(conninfo, settings)

    def start(self) -> Webhooks:
        self.leader.start()
        self.dispatcher.start()
        return self

    def stop(self) -> None:
        self.dispatcher.stop()
        self.leader.stop()
