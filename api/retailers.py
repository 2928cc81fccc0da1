"""Retailers and their bearer API keys. Keys are random, shown once, stored as SHA-256.

A retailer has two kinds of key: secret ones (`cl_…`), for its servers, which may call every
route; and publishable ones (`pk_…`), safe to ship in a web page, which may call only the
storefront and checkout-session routes (api/deps.py enforces it). The kind is stored beside the
hash; the prefix only helps people tell the two apart.

A revoked key keeps its row (revocation is history) and stops authenticating. An API process
remembers the keys it has checked, so that a request costs no database lookup; it trusts that
memory only while its KeyListener (api/key_listener.py) listens for revocations, which makes it
forget a revoked key as soon as the revocation commits.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import unicodedata
from datetime import datetime
from typing import Any, Literal, NamedTuple
from uuid import UUID, uuid4

from psycopg import Connection, errors
from psycopg_pool import ConnectionPool

MAX_NAME_LENGTH = 200
# How long a process trusts a key it has checked, while it listens for revocations (a revocation
# makes it forget the key at once: this only bounds what a change the trigger does not see, such
# as a restored backup, could leave trusted).
KNOWN_FOR = 300.0
# How often a process writes a key's last_used_at, at most (seconds, per key): never a write per request.
RECORD_USE_EVERY = 60.0
# Characters of the key's random part kept (after its `cl_` or `pk_`) to recognise it by: 24 bits of 256.
PREFIX_CHARACTERS = 4
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
    """A key's public id: the start of its SHA-256 (the key cannot be recovered from it). The
    database computes the same (api_keys.key_id)."""
    return "key_" + key_hash[:16]


def shown_prefix(api_key: str) -> str:
    """What `retailer keys` shows of a key to recognise it by: its kind's prefix and the first
    PREFIX_CHARACTERS characters after it (``cl_Ab3x``)."""
    kind_prefix = next((p for p in KEY_PREFIX.values() if api_key.startswith(p)), "")
    return api_key[: len(kind_prefix) + PREFIX_CHARACTERS]


class KeyNotFound(Exception):
    def __init__(self, name: str, key_id: str) -> None:
        super().__init__(f"the retailer named {name!r} has no key {key_id!r} (see `coupon-ledger retailer keys`)")
        self.key_id = key_id


class KeyRecord(NamedTuple):
    """A key as `retailer keys` lists it: never the key or its hash."""

    key_id: str
    kind: KeyKind
    prefix: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class Revoked(NamedTuple):
    key_id: str
    revoked_at: datetime


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
    def __init__(
        self, pool: ConnectionPool, known_for: float = KNOWN_FOR, record_use_every: float = RECORD_USE_EVERY
    ) -> None:
        self.pool = pool
        self.known_for = known_for
        self.record_use_every = record_use_every
        self._known: dict[str, tuple[ApiKey, float]] = {}  # key hash -> (what it stands for, until when)
        self._lock = threading.Lock()
        # Whether the memory may be used: only while a KeyListener listens for revocations (it says
        # so with ``trust``). Until then, and whenever it has lost its connection, every request
        # asks the database.
        self._trusted = False
        # Moves on with every revocation heard and every change of trust: a lookup that started
        # before one of them does not store what it read (it may be the row from before the revocation).
        self._generation = 0
        self._next_use_record: dict[str, float] = {}  # key hash -> when its next use is worth writing
        self._used: set[str] = set()  # key hashes used since the last ``record_uses``

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
            self._insert_key(conn, retailer_id, api_key, SECRET)
            self._insert_key(conn, retailer_id, publishable_key, PUBLISHABLE)
        return NewRetailer(retailer_id, api_key, publishable_key)

    @staticmethod
    def _insert_key(conn: Connection[Any], retailer_id: UUID, api_key: str, kind: KeyKind) -> None:
        conn.execute(
            "INSERT INTO api_keys (key_hash, retailer_id, kind, prefix) VALUES (%s, %s, %s, %s)",
            (hash_key(api_key), retailer_id, kind, shown_prefix(api_key)),
        )

    def issue_key(self, name: str, revoke_others: bool = False, kind: KeyKind = SECRET) -> IssuedKey:
        """A new key of this kind for the retailer of this name (for a lost or leaked key): its
        id, the key, and how many older keys of the same kind were revoked (all of them not yet
        revoked with ``revoke_others``, else none; keys of the other kind are never touched, so
        rotating a secret key leaves the storefront's publishable key working). Raises RetailerNotFound."""
        name = normalize_retailer_name(name)
        api_key = new_key(kind)
        with self.pool.connection() as conn, conn.transaction():
            retailer_id = self._retailer_id(conn, name)
            revoked = 0
            if revoke_others:  # the table's trigger tells every API process, when this commits
                revoked = conn.execute(
                    "UPDATE api_keys SET revoked_at = now()"
                    " WHERE retailer_id = %s AND kind = %s AND revoked_at IS NULL",
                    (retailer_id, kind),
                ).rowcount
            self._insert_key(conn, retailer_id, api_key, kind)
        return IssuedKey(retailer_id, api_key, kind, revoked)

    def keys(self, name: str) -> list[KeyRecord]:
        """Every key of the retailer of this name, revoked ones included, oldest first. Raises RetailerNotFound."""
        name = normalize_retailer_name(name)
        with self.pool.connection() as conn:
            retailer_id = self._retailer_id(conn, name)
            rows = conn.execute(
                "SELECT key_id, kind, prefix, created_at, last_used_at, revoked_at FROM api_keys"
                " WHERE retailer_id = %s ORDER BY created_at, key_id",
                (retailer_id,),
            ).fetchall()
        return [KeyRecord(*row) for row in rows]

    def revoke(self, name: str, key_id: str) -> Revoked:
        """Revoke the key of this id of the retailer of this name: it keeps its row, with when it
        was revoked, and stops working in every API process within a second (the table's trigger
        notifies them as this commits). A key revoked already keeps its first revocation time.
        Raises RetailerNotFound, and KeyNotFound for an id that is not one of this retailer's keys."""
        name = normalize_retailer_name(name)
        with self.pool.connection() as conn, conn.transaction():
            retailer_id = self._retailer_id(conn, name)
            row = conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND retailer_id = %s AND revoked_at IS NULL"
                " RETURNING revoked_at",
                (key_id, retailer_id),
            ).fetchone()
            if row is None:
                row = conn.execute(
                    "SELECT revoked_at FROM api_keys WHERE key_id = %s AND retailer_id = %s", (key_id, retailer_id)
                ).fetchone()
            if row is None:
                raise KeyNotFound(name, key_id)
        return Revoked(key_id, row[0])

    def named(self, name: str) -> UUID:
        """The id of the retailer of this name (compared as ``create`` does); RetailerNotFound."""
        name = normalize_retailer_name(name)
        with self.pool.connection() as conn:
            return self._retailer_id(conn, name)

    @staticmethod
    def _retailer_id(conn: Connection[Any], name: str) -> UUID:
        row = conn.execute("SELECT id FROM retailers WHERE lower(btrim(name)) = lower(%s)", (name,)).fetchone()
        if row is None:
            raise RetailerNotFound(name)
        retailer_id: UUID = row[0]
        return retailer_id

    def known(self, api_key: str) -> ApiKey | None:
        """The retailer and kind of a key this process authenticated within the last ``known_for``
        seconds, while it listens for revocations; None otherwise (then ``authenticate`` asks the
        database). A hash, two dict lookups and a clock read: the cost of every request."""
        if not self._trusted:
            return None
        key_hash = hash_key(api_key)
        entry = self._known.get(key_hash)
        if entry is None:
            return None
        now = time.monotonic()
        if entry[1] < now:
            return None
        self._note_use(key_hash, now)
        return entry[0]

    def authenticate(self, api_key: str) -> ApiKey | None:
        """What a key stands for, from memory (``known``) or else from the database; None for an
        unknown or revoked key."""
        known = self.known(api_key)
        if known is not None:
            return known
        key_hash = hash_key(api_key)
        generation = self._generation
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT retailer_id, kind FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL", (key_hash,)
            ).fetchone()
        now = time.monotonic()
        with self._lock:
            if row is None:
                self._known.pop(key_hash, None)
                return None
            found = ApiKey(row[0], row[1], key_id_of(key_hash))
            # Stored only if no revocation was heard, and trust did not change, since the lookup began.
            if self._trusted and generation == self._generation:
                self._known[key_hash] = (found, now + self.known_for)
        self._note_use(key_hash, now)
        return found

    def _note_use(self, key_hash: str, now: float) -> None:
        # A key's first use, then one a ``record_use_every``, is queued for ``record_uses`` (under
        # the lock, so that it is not added to a set record_uses has just taken); the others cost
        # a dict lookup. Two threads may both queue one: a set keeps it once.
        if self._next_use_record.get(key_hash, 0.0) <= now:
            with self._lock:
                self._next_use_record[key_hash] = now + self.record_use_every
                self._used.add(key_hash)

    def record_uses(self) -> int:
        """Write last_used_at of the keys used since the last call (one statement for all of
        them); how many. The KeyListener calls it every fraction of a second. On a database
        error they stay queued for the next call."""
        if not self._used:
            return 0
        with self._lock:
            used, self._used = self._used, set()
        try:
            with self.pool.connection() as conn:
                conn.execute(
                    "UPDATE api_keys SET last_used_at = greatest(last_used_at, now()) WHERE key_hash = ANY(%s)",
                    (sorted(used),),  # in one order: two processes' updates cannot deadlock
                )
        except BaseException:
            with self._lock:
                self._used |= used
            raise
        return len(used)

    def trust(self) -> None:
        """The KeyListener listens: forget what was remembered before (a revocation may have been
        missed while nobody listened), then remember keys again."""
        with self._lock:
            self._known.clear()
            self._generation += 1
            self._trusted = True

    def distrust(self) -> None:
        """The KeyListener lost its connection: forget every key and ask the database for each
        request until ``trust`` is called again."""
        with self._lock:
            self._trusted = False
            self._known.clear()
            self._generation += 1

    def forget(self, key_id: str) -> None:
        """A key was revoked (or deleted, or moved): drop it from memory, whatever it was."""
        with self._lock:
            self._generation += 1
            for key_hash in [h for h, (key, _until) in self._known.items() if key.key_id == key_id]:
                del self._known[key_hash]

    def count(self) -> int:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM retailers").fetchone()
        return int(row[0]) if row else 0
