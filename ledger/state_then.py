"""A coupon's state then: as it was after its event N, or at a moment, rebuilt from its events.

Never from a read model, and at a cost that does not grow with the coupon's history:

- After event N: the library's ``repository.get(id, version=N)`` reads the newest snapshot at or
  below N and the events after it up to N, so at most one snapshot interval of events (the writer
  snapshots a coupon each time a save takes it past a multiple of the interval).
- At a moment T: the version then is the last one whose event happened at or before T. It is
  found by bisection on versions, each step a point read of one event by its primary key
  (originator_id, originator_version): about log2(versions) reads (20 for a million events), then
  the state after that version as above.

Event timestamps within one stream are written by the deciding process's clock (the database's,
run forward by that process: ledger/clock.py), which never goes backwards in a process, and a
process decides an event only after reading the one before it, so a stream's times rise with its
versions. Two processes' readings of the database's clock may disagree by a few milliseconds; a
stream written by both can then hold an event stamped up to those milliseconds before the event
it follows. The bisection still answers a version whose event is at or before T and whose next
event is after T (so the answer is always a state the coupon really had at a moment next to T),
but for a T inside such a disordered window it may be either of the states the window holds.
Outside those few milliseconds the answer is exact.

The state's derived status and live holds are judged at the moment asked for (after event N: the
time of event N), not now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application

from ledger.domain import Coupon, coupon_id_for
from ledger.errors import CouponNotFound, InvalidCoupon
from ledger.handlers import lookup_code
from ledger.timestamps import format_timestamp


@dataclass(frozen=True)
class CouponThen:
    """The coupon as it was after event ``version``; ``at``: the moment its status is judged at
    (the time of that event when asked by version)."""

    coupon: Coupon
    version: int
    at: datetime

    @property
    def archived(self) -> bool:
        return bool(self.coupon.archived)


class StateThen:
    """The queries of a coupon's past states, over an application's event and snapshot stores."""

    def __init__(self, app: Application[UUID], clock: Any) -> None:
        self.app = app
        self.clock = clock

    def after_version(self, retailer_id: UUID, code: str, version: int) -> CouponThen:
        """The coupon after its event ``version`` (archived coupons' too: their history is kept).
        COUPON_NOT_FOUND if it never existed; VALIDATION_FAILED naming ``version`` if it is below 1
        or past the coupon's last event."""
        code = lookup_code(code)
        if version < 1:
            raise InvalidCoupon("version", "must be at least 1 (the coupon's creation)")
        coupon = self._coupon_at(retailer_id, code, version)
        if coupon.version < version:
            raise InvalidCoupon("version", f"must be at most {coupon.version}, the coupon's last version")
        return CouponThen(coupon, version, coupon.modified_on)

    def at(self, retailer_id: UUID, code: str, moment: datetime) -> CouponThen:
        """The coupon at ``moment``: after the last event that happened at or before it (one that
        happened exactly then included). COUPON_NOT_FOUND if it did not exist yet (or never);
        VALIDATION_FAILED naming ``at`` for a moment later than the ledger's clock (what is still
        to come is not history: a state answered for it could change)."""
        code = lookup_code(code)
        coupon_id = coupon_id_for(retailer_id, code)
        last = self._event(coupon_id, None)
        if last is None:
            raise _not_found(code)
        now = self.clock()
        if moment > now and moment > last.timestamp:
            raise InvalidCoupon("at", f"must not be later than now ({format_timestamp(now)})")
        if moment >= last.timestamp:
            version = last.originator_version
        else:
            version = self._version_at(coupon_id, code, moment, last.originator_version)
        return CouponThen(self._coupon_at(retailer_id, code, version), version, moment)

    def _version_at(self, coupon_id: UUID, code: str, moment: datetime, last: int) -> int:
        """The last version whose event is at or before ``moment``, known to be before ``last``'s."""
        first = self._event(coupon_id, 1)
        if first is None or moment < first.timestamp:
            raise _not_found(code)
        low, high = 1, last  # the event of low is at or before the moment; the event of high after it
        while high - low > 1:
            middle = (low + high) // 2
            event = self._event(coupon_id, middle)
            if event is not None and event.timestamp <= moment:
                low = middle
            else:
                high = middle
        return low

    def _event(self, coupon_id: UUID, version: int | None) -> Any:
        """One event by its primary key (the newest with ``version`` None), or None."""
        if version is None:
            events = self.app.events.get(coupon_id, desc=True, limit=1)
        else:
            events = self.app.events.get(coupon_id, gt=version - 1, lte=version, limit=1)
        return next(iter(events), None)

    def _coupon_at(self, retailer_id: UUID, code: str, version: int) -> Coupon:
        """The coupon after event ``version`` (after its last, if that comes before)."""
        try:
            aggregate: object = self.app.repository.get(coupon_id_for(retailer_id, code), version=version)
        except AggregateNotFoundError:
            raise _not_found(code) from None
        if not isinstance(aggregate, Coupon):
            raise _not_found(code)
        return aggregate


def _not_found(code: str) -> CouponNotFound:
    return CouponNotFound(f"Coupon {code} does not exist.", code=code)
