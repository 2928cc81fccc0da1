"""Who acted: every event records the actor of the command that made it (in its ``actor``
attribute, so the hash chain covers it): the key's id and kind and the request's id for a request,
``cli`` or ``sweeper`` (or ``system``) for work that no request asked for. Never the key itself."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Actor:
    kind: str  # secret_key, publishable_key, cli, sweeper, system
    key_id: str | None = None
    request_id: str | None = None

    def as_data(self) -> dict[str, Any]:
        """What the event records: the fields that are set."""
        data: dict[str, Any] = {"kind": self.kind}
        if self.key_id is not None:
            data["key_id"] = self.key_id
        if self.request_id is not None:
            data["request_id"] = self.request_id
        return data


SYSTEM = Actor("system")
CLI = Actor("cli")
SWEEPER = Actor("sweeper")

_ACTOR: ContextVar[Actor] = ContextVar("actor", default=SYSTEM)


def current_actor() -> Actor:
    """The actor of the commands this context submits (read when a command is queued)."""
    return _ACTOR.get()


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    token = _ACTOR.set(actor)
    try:
        yield actor
    finally:
        _ACTOR.reset(token)


def set_actor(actor: Actor) -> None:
    """For the rest of this context (a request's, a process's main thread)."""
    _ACTOR.set(actor)
