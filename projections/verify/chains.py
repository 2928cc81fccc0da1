"""verify's check of every hash chain (ledger/served_events.py) and, given one, of a saved digest.

- Each event's recorded content, served as the events endpoint serves it, must hash (with the
  prev_hash stored beside it) to the hash stored beside it: an event altered after it was written
  is named, with its stream and version. Checked while the log is walked, page by page.
- Each event's prev_hash must be the hash of the event before it in its stream (64 zeros for the
  first): reordered events, and one removed from the middle of a stream, are named. One statement:
  the events table joined with itself on its primary key, in the database.
- A stream cut short (its newest events removed) leaves a valid, shorter chain: it is named where
  the read model saw a version the log no longer has, and by a digest saved before the cut.
- A digest (GET /v1/audit/digest): its signature must be the deployment key's over the rest of it,
  and the log must still yield its root, event count and stream count at its position.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from psycopg.sql import SQL

from ledger.digest import AuditLog
from ledger.served_events import ZERO_HASH, event_hash, served_event
from projections.verify.state import Report
from projections.verify.store import EventStore


def stream_label(kind: str, stream: UUID, code: str | None) -> str:
    """``coupon SAVE10 (id)``; for the coupon's other streams ``redemption stream id of coupon SAVE10``."""
    if kind == "Coupon":
        return f"coupon {code or '?'} ({stream})"
    kind_name = "".join(f" {c.lower()}" if c.isupper() else c for c in kind).strip()
    owner = f" of coupon {code}" if code else ""
    return f"{kind_name} stream {stream}{owner}"


def kind_of(topic: str) -> str:
    """The aggregate of an event's topic: ``ledger.domain:Coupon.Redeemed`` -> ``Coupon``."""
    return topic.partition(":")[2].partition(".")[0]


class ChainAudit:
    def __init__(self, report: Report) -> None:
        self.report = report
        self.events = 0

    def see(self, row: Mapping[str, Any], event: Any) -> None:
        """One event as stored (its row) and decoded."""
        self.events += 1
        label = stream_label(kind_of(row["topic"]), row["originator_id"], row["code"])
        version = row["originator_version"]
        if row["hash"] is None or row["prev_hash"] is None:
            self.report.violations.append(f"{label}: event {version} has no hash (not linked in the chain)")
            return
        if event_hash(bytes(row["prev_hash"]).hex(), served_event(event)) != bytes(row["hash"]).hex():
            self.report.violations.append(
                f"{label}: event {version} ({row['topic'].partition(':')[2]}) does not match its hash:"
                " its content was altered after it was written"
            )


def check_links(store: EventStore, report: Report) -> None:
    """prev_hash of every event against the hash of the one before it in its stream."""
    rows = store.rows(
        SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.code, p.originator_version AS before"
            " FROM {events} e LEFT JOIN {events} p"
            "  ON p.originator_id = e.originator_id AND p.originator_version = e.originator_version - 1"
            " WHERE e.prev_hash IS DISTINCT FROM"
            "  (CASE WHEN e.originator_version = 1 THEN %s::bytea ELSE p.hash END)"
            " ORDER BY e.originator_id, e.originator_version"
        ),
        (bytes.fromhex(ZERO_HASH),),
    )
    for row in rows:
        label = stream_label(kind_of(row["topic"]), row["originator_id"], row["code"])
        version = row["originator_version"]
        if version > 1 and row["before"] is None:
            why = f"event {version - 1}, which it follows, is missing (removed)"
        elif version == 1:
            why = "it is the first event, but its prev_hash is not 64 zeros"
        else:
            why = f"its prev_hash is not the hash of event {version - 1} (events reordered or replaced)"
        report.violations.append(f"{label}: event {version} does not follow the chain: {why}")


def check_cut(store: EventStore, report: Report) -> None:
    """Coupons whose read-model row saw a version the log no longer holds."""
    rows = store.rows(
        SQL(
            "SELECT c.id, c.code, c.version, coalesce(("
            "  SELECT max(e.originator_version) FROM {events} e WHERE e.originator_id = c.id), 0) AS stored"
            " FROM coupons c WHERE c.version > coalesce(("
            "  SELECT max(e.originator_version) FROM {events} e WHERE e.originator_id = c.id), 0)"
            " ORDER BY c.id"
        ),
        (),
    )
    for row in rows:
        report.violations.append(
            f"{stream_label('Coupon', row['id'], row['code'])}: the log ends at version {row['stored']}, but"
            f" version {row['version']} was recorded (its read model saw it): events were removed from its end"
        )


def check_digest(digest: Mapping[str, Any], audit_log: AuditLog, verifies: bool, report: Report) -> None:
    """A saved digest against the log now. ``verifies``: whether its signature is the deployment key's."""
    if not verifies:
        report.violations.append(
            "the digest's signature is not valid for the deployment's key: the digest was forged or altered"
        )
    try:
        retailer_id = UUID(str(digest["retailer_id"]))
        position = int(digest["position"])
    except (KeyError, TypeError, ValueError):
        report.violations.append("the digest names no retailer_id and position")
        return
    head = audit_log.position()
    if position > head:
        report.violations.append(f"the log ends at position {head}, before the digest's position {position}: cut")
        return
    tree = audit_log.tree(retailer_id, position)
    if tree.root != digest.get("root"):
        report.violations.append(
            f"the log no longer yields the digest's root at position {position} (retailer {retailer_id}):"
            f" {tree.events} events in {tree.streams} streams now, {digest.get('events')} in"
            f" {digest.get('streams')} then; the streams rewritten or cut are named above where the log shows it"
        )
