"""What auditors read: a signed digest of a retailer's log, the key that signs digests, and the
proof that a coupon's head is under a digest's root."""

from __future__ import annotations

from pydantic import BaseModel, Field

HEX64 = Field(pattern="^[0-9a-f]{64}$", examples=["4c9e" + "0" * 60])


class DigestPublic(BaseModel):
    """A SHA-256 Merkle root (RFC 6962: leaves hashed with a 0x00 prefix, nodes with 0x01) over the
    head hash of every stream of the retailer as the log stood at ``position``; each leaf is the
    stream's id (16 bytes) followed by its head's hash (32 bytes), in stream id order. Signed with
    Ed25519 (GET /v1/audit/public-key) over the canonical JSON (sorted keys, no spaces) of every
    other field. Keep it: `coupon-ledger verify --digest FILE` later checks the log still yields it."""

    retailer_id: str
    position: int = Field(description="The log position (notification id) the digest covers, inclusive.")
    events: int = Field(description="The retailer's events up to that position.")
    streams: int = Field(description="The retailer's streams (leaves) then.")
    root: str = HEX64
    issued_at: str = Field(examples=["2027-01-31T23:59:59.123456Z"])
    key_id: str = Field(examples=["ed25519_3f1c0a9b8d7e6f50"])
    signature: str = Field(pattern="^[0-9a-f]{128}$", description="Ed25519 signature, hex.")


class PublicKeyPublic(BaseModel):
    key_id: str = Field(examples=["ed25519_3f1c0a9b8d7e6f50"])
    algorithm: str = Field(examples=["Ed25519"])
    public_key: str = Field(description="The raw 32-byte public key, hex.")
    pem: str = Field(description="The same key as PEM (SubjectPublicKeyInfo).")


class ProofPublic(BaseModel):
    """The audit path (RFC 6962 PATH) from the coupon's head at ``position`` to the digest's root:
    hash the leaf (0x00 || stream id bytes || head hash), then combine it with each hash of ``path``
    in turn (RFC 9162 §2.1.3.2) using ``leaf_index`` and ``tree_size``; the result must equal ``root``."""

    code: str
    stream: str
    position: int
    version: int = Field(description="The coupon's newest version at that position.")
    head_hash: str = HEX64
    leaf_index: int
    tree_size: int
    path: list[str]
    root: str = HEX64
