"""Retailers and their bearer API keys. Keys are random, shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
import threading
from uuid import UUID, uuid4

from psycopg_pool import ConnectionPool


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class Retailers:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self._known: dict[str, UUID] = {}
        self._lock = threading.Lock()

    def create(self, name: str) -> tuple[UUID, str]:
        retailer_id = uuid4()
        api_key = "cl_" + secrets.token_urlsafe(32)
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("INSERT INTO retailers (id, name) VALUES (%s, %s)", (retailer_id, name))
            conn.execute(
                "INSERT INTO api_keys (key_hash, retailer_id) VALUES (%s, %s)", (hash_key(api_key), retailer_id)
            )
        return retailer_id, api_key

    def known(self, api_key: str) -> UUID | None:
        """The retailer of a key already authenticated by this process; None if not seen yet."""
        return self._known.get(hash_key(api_key))

    def authenticate(self, api_key: str) -> UUID | None:
        key_hash = hash_key(api_key)
        with self._lock:
            if key_hash in self._known:
                return self._known[key_hash]
        with self.pool.connection() as conn:
            row = conn.execute("SELECT retailer_id FROM api_keys WHERE key_hash = %s", (key_hash,)).fetchone()
        if row is None:
            return None
        retailer_id: UUID = row[0]
        with self._lock:
            self._known[key_hash] = retailer_id
        return retailer_id

    def count(self) -> int:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM retailers").fetchone()
        return int(row[0]) if row else 0
