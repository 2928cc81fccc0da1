"""Retailers and their bearer API keys. Keys are random, shown once, stored as SHA-256.

A retailer has two kinds of key: secret ones (`cl_…`), for its servers, which may call every
route; and publishable ones (`pk_…`), safe to ship in a web page, which may call only the
storefront and checkout-session routes (api/deps.py enforces it). The kind is stored beside the
hash; the prefix only helps people tell the two apart.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import unicodedata
from typing import Literal, NamedTuple
from uuid import UUID, uuid4

from psycopg import errors
from psycopg_pool import ConnectionPool

MAX_NAME_LENGTH = 200
KNOWN_FOR = 30.0  # seconds a process trusts a key it has checked: a revoked key works at most this long
NAME_INDEX = "retailers_name_unique"  # schema.sql: unique on lower(btrim(name))
KeyKind = Literal["secret", "publishable"]
SECRET: KeyKind = "secret"
PUBLISHABLE: KeyKind = "publishable"
KEY_PREFIX: dict[KeyKind, str] = {SECRET: "cl_", PUBLISHABLE: "pk_"}


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


def new_key(kind: KeyKind) -> str:
    return KEY_PREFIX[kind] + secrets.token_urlsafe(32)


class ApiKey(NamedTuple):
    """What a key stands for: its retailer and its kind, and the key's public id (what events
    record of who acted: never the key)."""

    retailer_id: UUID
    kind: KeyKind
    key_id: str


def key_id_of(key_hash: str) -> str:
    """A key's public id: the start of its SHA-256 (the key cannot be recovered from it)."""
    return "key_" + key_hash[:16]


class NewRetailer(NamedTuple):
    """A retailer just created, with its two keys (shown only now: only their hashes are kept)."""

    retailer_id: UUID
    api_key: str
    publishable_key: str


class IssuedKey(NamedTuple):
    retailer_id: UUID
    key: str
    kind: KeyKind
    revoked: int


class Retailers:
    def __init__(self, pool: ConnectionPool, known_for: float = KNOWN_FOR) -> None:
        self.pool = pool
        self.known_for = known_for
        self._known: dict[str, tuple[ApiKey, float]] = {}  # key hash -> (what it stands for, until when)
        self._lock = threading.Lock()

    def create(self, name: str) -> NewRetailer:
        """A new retailer, its secret API key and its publishable key. Raises ValueError for a
        malformed name, and RetailerNameTaken, creating nothing, if the name is taken (the
        database decides)."""
        name = normalize_retailer_name(name)
        retailer_id = uuid4()
        api_key, publishable_key = new_key(SECRET), new_key(PUBLISHABLE)
        with self.pool.connection() as conn, conn.transaction():
            try:
                conn.execute("INSERT INTO retailers (id, name) VALUES (%s, %s)", (retailer_id, name))
            except errors.UniqueViolation as error:
                if error.diag.constraint_name == NAME_INDEX:
                    raise RetailerNameTaken(name) from None
                raise
            conn.execute(
                "INSERT INTO api_keys (key_hash, retailer_id, kind) VALUES (%s, %s, %s), (%s, %s, %s)",
                (hash_key(api_key), retailer_id, SECRET, hash_key(publishable_key), retailer_id, PUBLISHABLE),
            )
        return NewRetailer(retailer_id, api_key, publishable_key)

    def issue_key(self, name: str, revoke_others: bool = False, kind: KeyKind = SECRET) -> IssuedKey:
        """A new key of this kind for the retailer of this name (for a lost or leaked key): its
        id, the key, and how many older keys of the same kind were revoked (all of them with
        ``revoke_others``, else none; keys of the other kind are never touched, so rotating a
        secret key leaves the storefront's publishable key working). Raises RetailerNotFound."""
        name = normalize_retailer_name(name)
        api_key = new_key(kind)
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute("SELECT id FROM retailers WHERE lower(btrim(name)) = lower(%s)", (name,)).fetchone()
            if row is None:
                raise RetailerNotFound(name)
            retailer_id: UUID = row[0]
            revoked = 0
            if revoke_others:
                revoked = conn.execute(
                    "DELETE FROM api_keys WHERE retailer_id = %s AND kind = %s", (retailer_id, kind)
                ).rowcount
            conn.execute(
                "INSERT INTO api_keys (key_hash, retailer_id, kind) VALUES (%s, %s, %s)",
                (hash_key(api_key), retailer_id, kind),
            )
        return IssuedKey(retailer_id, api_key, kind, revoked)

    def named(self, name: str) -> UUID:
        """The id of the retailer of this name (compared as ``create`` does); RetailerNotFound."""
        name = normalize_retailer_name(name)
        with self.pool.connection() as conn:
            row = conn.execute("SELECT id FROM retailers WHERE lower(btrim(name)) = lower(%s)", (name,)).fetchone()
        if row is None:
            raise RetailerNotFound(name)
        retailer_id: UUID = row[0]
        return retailer_id

    def known(self, api_key: str) -> ApiKey | None:
        """The retailer and kind of a key this process authenticated within the last KNOWN_FOR
        seconds; None otherwise (then ``authenticate`` asks the database again, so a revoked key
        stops working within that time). One hash and one dict lookup: the cost of every request."""
        entry = self._known.get(hash_key(api_key))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def authenticate(self, api_key: str) -> ApiKey | None:
        known = self.known(api_key)
        if known is not None:
            return known
        key_hash = hash_key(api_key)
        with self.pool.connection() as conn:
            row = conn.execute("SELECT retailer_id, kind FROM api_keys WHERE key_hash = %s", (key_hash,)).fetchone()
        with self._lock:
            if row is None:
                self._known.pop(key_hash, None)
                return None
            found = ApiKey(row[0], row[1], key_id_of(key_hash))
            self._known[key_hash] = (found, time.monotonic() + self.known_for)
        return found

    def count(self) -> int:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM retailers").fetchone()
        return int(row[0]) if row else 0
