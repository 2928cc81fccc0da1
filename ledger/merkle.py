"""Merkle trees as RFC 6962 (Certificate Transparency) defines them, over SHA-256.

A leaf is hashed as sha256(0x00 || data) and a node as sha256(0x01 || left || right), so a leaf can
never pass for a node; a tree of n leaves splits at the largest power of two below n. The leaves of
a retailer's digest are its streams in id order, each ``stream id (16 bytes) || head hash (32 bytes)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from uuid import UUID

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_data(stream: UUID, head_hash: bytes) -> bytes:
    return stream.bytes + head_hash


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_of(leaf_hashes: Iterable[bytes]) -> tuple[bytes, int]:
    """(root, number of leaves), reading the leaves once with O(log n) memory: complete subtrees are
    merged as they fill (left to right), and what is left is merged from the right at the end,
    which is the RFC's split at the largest power of two."""
    stack: list[tuple[int, bytes]] = []  # (leaves under it, hash), sizes strictly decreasing
    count = 0
    for leaf in leaf_hashes:
        count += 1
        size, digest = 1, leaf
        while stack and stack[-1][0] == size:
            left_size, left = stack.pop()
            size, digest = left_size + size, node_hash(left, digest)
        stack.append((size, digest))
    if not stack:
        return EMPTY_ROOT, 0
    _, digest = stack.pop()
    while stack:
        _, left = stack.pop()
        digest = node_hash(left, digest)
    return digest, count


def _split(n: int) -> int:
    """The largest power of two below n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def audit_path(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[n]): the sibling hashes from leaf ``index`` up to the root, leaf end first."""
    if not 0 <= index < len(leaf_hashes):
        raise IndexError(index)
    if len(leaf_hashes) == 1:
        return []
    k = _split(len(leaf_hashes))
    if index < k:
        return [*audit_path(index, leaf_hashes[:k]), root_of(leaf_hashes[k:])[0]]
    return [*audit_path(index - k, leaf_hashes[k:]), root_of(leaf_hashes[:k])[0]]


def root_from_path(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes:
    """The root that leaf ``index`` of a tree of ``size`` leaves and its audit path lead to (RFC 9162
    §2.1.3.2); the proof holds if it equals the digest's root."""
    if not 0 <= index < size:
        raise ValueError("leaf index outside the tree")
    fn, sn, digest = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            raise ValueError("audit path longer than the tree")
        if fn & 1 or fn == sn:
            digest = node_hash(sibling, digest)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            digest = node_hash(digest, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("audit path shorter than the tree")
    return digest
