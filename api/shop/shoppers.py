"""Who calls a checkout session, what they may open, and how many holds they may keep.

A secret key is the retailer's own server: it opens every session of the retailer. A
publishable key is a web page, which anybody can copy: it opens only a session whose client
secret it sends (given to the session's creator, stored hashed), and the holds it may make
(a coupon use, stock) are capped per shopper: per client address, and per ``customer_id``
(which such a caller names freely, so that cap is only as good as the caller).

Counting is exact under concurrency: the transaction that saves a hold takes an advisory lock
per shopper it counts (in key order, after the products' rows: ``api.shop.stock.lock_rows``), so
two holds of one shopper are counted one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg.rows import tuple_row

from api.shop.errors import too_many_holds
from api.shop.stock import SHOPPERS

# Sessions of one shopper other than this one, open and holding a coupon use or stock.
HOLDING = """
SELECT count(*), min(s.expires_at) FROM checkout_sessions s
WHERE s.retailer_id = %(retailer_id)s AND s.id <> %(session_id)s {shopper}
  AND s.status = 'open' AND s.expires_at > %(now)s
  AND (s.reservation_id IS NOT NULL OR EXISTS (
        SELECT 1 FROM inventory_holds h
        WHERE h.retailer_id = s.retailer_id AND h.session_id = s.id AND h.expires_at > %(now)s))
"""
BY_ADDRESS = HOLDING.format(shopper="AND s.holder_address = %(value)s")
BY_CUSTOMER = HOLDING.format(shopper="AND s.customer_id = %(value)s AND s.reservation_id IS NOT NULL")


@dataclass(frozen=True)
class Shopper:
    """The caller of a session route: with a publishable key (``publishable``), the client secret
    it sent (``X-Client-Secret``) and its client address; with a secret key, nothing is needed."""

    publishable: bool = False
    client_secret: str | None = None
    address: str | None = None

    @property
    def holder_address(self) -> str | None:
        """The address a hold made by this caller is counted against (a publishable key's only)."""
        return self.address if self.publishable else None


RETAILER = Shopper()  # a secret key's caller


@dataclass(frozen=True)
class HoldCap:
    """At most ``limit`` sessions holding something per shopper under a publishable key."""

    limit: int

    def locks(self, retailer_id: UUID, shopper: Shopper, customer_id: str | None) -> tuple[tuple[str, str], ...]:
        """The advisory locks of the shoppers a hold by ``shopper`` is counted against."""
        return tuple((SHOPPERS, key) for key, _, _ in self._shoppers(retailer_id, shopper, customer_id))

    def check(
        self,
        conn: Connection[Any],
        retailer_id: UUID,
        session_id: str,
        shopper: Shopper,
        customer_id: str | None,
        now: datetime,
        locked: bool = False,
    ) -> None:
        """RATE_LIMITED if ``shopper`` (its address, its customer_id) already holds in ``limit``
        other sessions. ``locked``: the transaction holds the shoppers' advisory locks already."""
        for key, query, value in self._shoppers(retailer_id, shopper, customer_id):
            if not locked:
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
            with conn.cursor(row_factory=tuple_row) as cur:  # the writer's connections answer dicts
                cur.execute(query, {"retailer_id": retailer_id, "session_id": session_id, "now": now, "value": value})
                row = cur.fetchone()
            assert row is not None
            holding, first_ends = int(row[0]), row[1]
            if holding >= self.limit:
                raise too_many_holds(
                    "customer_id" if query is BY_CUSTOMER else "client_address", self.limit, now, first_ends
                )

    @staticmethod
    def _shoppers(retailer_id: UUID, shopper: Shopper, customer_id: str | None) -> list[tuple[str, str, str]]:
        if not shopper.publishable:
            return []
        shoppers = []
        if shopper.address is not None:
            shoppers.append((f"holds:{retailer_id}:address:{shopper.address}", BY_ADDRESS, shopper.address))
        if customer_id is not None:
            shoppers.append((f"holds:{retailer_id}:customer:{customer_id}", BY_CUSTOMER, customer_id))
        return sorted(shoppers)
