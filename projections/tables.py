"""The tables the coupons projection owns: every one is written under its tracking record, and
`coupon-ledger rebuild` projects every one of them again from the first event."""

from __future__ import annotations

# In the order their rows may be written (a table before those that refer to it).
PROJECTED_TABLES: tuple[str, ...] = ("coupons", "reservations", "campaigns", "redemptions", "redemption_buckets")
