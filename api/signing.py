"""The key that signs audit digests: Ed25519, made at the first start and kept in the database
(every process and machine of a deployment signs with the same key; auditors fetch its public half
from GET /v1/audit/public-key). Signatures cover a digest's canonical JSON (sorted keys, no spaces),
all of it but the signature."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from psycopg_pool import ConnectionPool

ALGORITHM = "Ed25519"


def signed_text(body: Mapping[str, Any]) -> bytes:
    """What a signature covers: every field but ``signature``, as canonical JSON."""
    fields = {k: v for k, v in body.items() if k != "signature"}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def key_id_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519_" + hashlib.sha256(raw).hexdigest()[:16]


class DigestSigner:
    def __init__(self, private: Ed25519PrivateKey) -> None:
        self.private = private
        self.public = private.public_key()
        self.key_id = key_id_of(self.public)

    @classmethod
    def load_or_create(cls, pool: ConnectionPool) -> DigestSigner:
        """The deployment's key; made now if this is the first start (concurrent starters agree on
        the first one stored)."""
        made = Ed25519PrivateKey.generate()
        raw = made.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        with pool.connection() as conn:
            conn.execute(
                "INSERT INTO audit_signing_key (private_key) VALUES (%s) ON CONFLICT DO NOTHING",
                (raw,),
            )
            row = conn.execute("SELECT private_key FROM audit_signing_key").fetchone()
        assert row is not None
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(row[0])))

    @classmethod
    def stored(cls, url: str) -> DigestSigner | None:
        """The deployment's key, if one was made (verify reads it; it never makes one)."""
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT private_key FROM audit_signing_key").fetchone()
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(row[0]))) if row is not None else None

    def sign(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``body`` with its ``key_id`` and ``signature`` (hex)."""
        signed = {**body, "key_id": self.key_id}
        return {**signed, "signature": self.private.sign(signed_text(signed)).hex()}

    def public_key(self) -> dict[str, str]:
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        pem = self.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return {"key_id": self.key_id, "algorithm": ALGORITHM, "public_key": raw.hex(), "pem": pem.decode()}

    def verifies(self, body: Mapping[str, Any]) -> bool:
        """Whether ``body`` carries this key's valid signature over the rest of it."""
        signature = body.get("signature")
        if body.get("key_id") != self.key_id or not isinstance(signature, str):
            return False
        try:
            self.public.verify(bytes.fromhex(signature), signed_text(body))
        except (InvalidSignature, ValueError):
            return False
        return True
