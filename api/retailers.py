"""Retailers and their bearer API keys. Keys are random, shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import unicodedata
from uuid import UUID, uuid4

from psycopg import errors
from psycopg_pool import ConnectionPool

MAX_NAME_LENGTH = 200
KNOWN_FOR = 30.0  # seconds a process trusts a key it has checked: a revoked key works at most this long
NAME_INDEX = "retailers_name_unique"  # schema.sql: unique on lower(btrim(name))


class RetailerNotFound(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"no retailer is named {name!r}")
        self.name = name


class RetailerNameTaken(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"a retailer named {name!r} already exists (names are compared without case)")
        self.name = name


def normalize_retailer_name(raw: str) -> str:
    """The name as stored: surrounding whitespace trimmed; ValueError if it is empty, longer than
    MAX_NAME_LENGTH characters, or holds a control character (NUL, a line break, ...)."""
    name = raw.strip()
    if not name:
        raise ValueError("the retailer name must not be empty or only whitespace")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"the retailer name is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed")
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise ValueError(f"the retailer name must not contain control characters (found {bad!r})")
    return name


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class Retailers:
    def __init__(self, pool: ConnectionPool, known_for: float = KNOWN_FOR) -> None:
        self.pool = pool
        self.known_for = known_for
        self._known: dict[str, tuple[UUID, float]] = {}  # key hash -> (retailer, until when)
        self._lock = threading.Lock()

    def create(self, name: str) -> tuple[UUID, str]:
        """A new retailer and its API key. Raises ValueError for a malformed name, and
        RetailerNameTaken, creating nothing, if the name is taken (the database decides)."""
        name = normalize_retailer_name(name)
        retailer_id = uuid4()
        api_key = "cl_" + secrets.token_urlsafe(32)
        with self.pool.connection() as conn, conn.transaction():
            try:
                conn.execute("INSERT INTO retailers (id, name) VALUES (%s, %s)", (retailer_id, name))
            except errors.UniqueViolation as error:
                if error.diag.constraint_name == NAME_INDEX:
                    raise RetailerNameTaken(name) from None
                raise
            conn.execute(
                "INSERT INTO api_keys (key_hash, retailer_id) VALUES (%s, %s)", (hash_key(api_key), retailer_id)
            )
        return retailer_id, api_key

    def issue_key(self, name: str, revoke_others: bool = False) -> tuple[UUID, str, int]:
        """A new API key for the retailer of this name (for a lost or leaked key): its id, the key,
        and how many older keys were revoked (all of them with ``revoke_others``, else none).
        Raises RetailerNotFound."""
        name = normalize_retailer_name(name)
        api_key = "cl_" + secrets.token_urlsafe(32)
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute("SELECT id FROM retailers WHERE lower(btrim(name)) = lower(%s)", (name,)).fetchone()
            if row is None:
                raise RetailerNotFound(name)
            retailer_id: UUID = row[0]
            revoked = 0
            if revoke_others:
                revoked = conn.execute("DELETE FROM api_keys WHERE retailer_id = %s", (retailer_id,)).rowcount
            conn.execute(
                "INSERT INTO api_keys (key_hash, retailer_id) VALUES (%s, %s)", (hash_key(api_key), retailer_id)
            )
        return retailer_id, api_key, revoked

    def named(self, name: str) -> UUID:
        """The id of the retailer of this name (compared as ``create`` does); RetailerNotFound."""
        name = normalize_retailer_name(name)
        with self.pool.connection() as conn:
            row = conn.execute("SELECT id FROM retailers WHERE lower(btrim(name)) = lower(%s)", (name,)).fetchone()
        if row is None:
            raise RetailerNotFound(name)
        retailer_id: UUID = row[0]
        return retailer_id

    def known(self, api_key: str) -> UUID | None:
        """The retailer of a key this process authenticated within the last KNOWN_FOR seconds;
        None otherwise (then ``authenticate`` asks the database again, so a revoked key stops
        working within that time)."""
        entry = self._known.get(hash_key(api_key))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def authenticate(self, api_key: str) -> UUID | None:
        retailer_id = self.known(api_key)
        if retailer_id is not None:
            return retailer_id
        key_hash = hash_key(api_key)
        with self.pool.connection() as conn:
            row = conn.execute("SELECT retailer_id FROM api_keys WHERE key_hash = %s", (key_hash,)).fetchone()
        with self._lock:
            if row is None:
                self._known.pop(key_hash, None)
                return None
            retailer_id = row[0]
            self._known[key_hash] = (retailer_id, time.monotonic() + self.known_for)
        return retailer_id

    def count(self) -> int:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM retailers").fetchone()
        return int(row[0]) if row else 0
