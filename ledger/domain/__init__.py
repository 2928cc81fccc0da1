"""The aggregates and the rules a redemption must pass.

- ``Coupon``: its terms, whether it is active or archived, and a count of its uses.
- ``Redemption``: one use of a coupon (its id is derived from the idempotency key when there is
  one, so the store itself rejects a repeated key); it may be reversed once.
- ``CustomerUsage``: one customer's uses of one coupon, for ``max_uses_per_customer``.
- ``Campaign``: bulk-generated codes sharing a budget (``max_redemptions``, ``max_discount_total``).
- ``Reservation``: a hold of one use during a checkout; while live it counts against every limit
  like a use (the coupon, the customer's usage and the campaign keep their live holds).

A redemption changes its coupon, creates its Redemption and, where they apply, changes the
customer's usage and the campaign, all in the same ``save()``: the store's version checks then
make every limit hold across processes. Nothing in an aggregate grows with its history.

Topics. The library stores each event under its class's topic, ``module:QualName``, and a snapshot
under its aggregate's; every event and snapshot stored so far says ``ledger.domain:Coupon.Redeemed``
and so on. Each aggregate therefore declares ``__module__ = "ledger.domain"`` (so do the event
classes the library derives from it), and this package exports them: the topics written today are
the topics stored before, old and new rows read alike, and a process still on the previous code
reads what a new one writes (and back). Registering the old topics with
``eventsourcing.utils.register_topic`` would read old rows too, but new rows would carry
``ledger.domain.coupon:...``: a mixed log, unreadable by the previous code, and a second spelling
for anything that selects rows by topic. Declaring an explicit ``TOPIC`` on every class would keep
them as well, at the cost of a topic string on each of some forty event classes.
tests/unit/test_domain_topics.py pins the topics.
"""

from ledger.domain.campaign import Campaign
from ledger.domain.coupon import CREATED_V2_DEFAULTS, Coupon
from ledger.domain.customer_usage import CustomerUsage
from ledger.domain.redemption import Redemption
from ledger.domain.reservation import Reservation
from ledger.domain.values import (
    ACTIVE,
    ASCII_WHITESPACE,
    BLANK_CHARACTERS,
    CODE_ALPHABET,
    CODE_RULE,
    COUNT_EXPIRED,
    DEFAULT_HOLD_SECONDS,
    DISCOUNT_TYPES,
    FIXED,
    FREE_SHIPPING,
    GENERATED_ALPHABET,
    GENERATED_LENGTH,
    IMMUTABLE_FIELDS,
    INACTIVE,
    MAX_HOLD_SECONDS,
    MUTABLE_FIELDS,
    NAMESPACE,
    PERCENTAGE,
    RESERVATION_CONFIRMED,
    RESERVATION_EXPIRED,
    RESERVATION_HELD,
    RESERVATION_RELEASED,
    SCHEDULED,
    SCOPE_FIELDS,
    STATUSES,
    TIME_EXPIRED,
    TRANSITIONS,
    UNSET,
    ZERO,
    Item,
    Order,
    Quote,
    Scope,
    Unset,
    as_order,
    ascii_upper,
    check_customer_id,
    check_discount,
    check_terms,
    confirmed_redemption_id_for,
    coupon_id_for,
    customer_usage_id_for,
    generate_code,
    live_holds,
    normalize_code,
    normalize_prefix,
    raise_immutable,
    redemption_id_for,
    reservation_id_for,
    without,
)

__all__ = [
    "ACTIVE",
    "ASCII_WHITESPACE",
    "BLANK_CHARACTERS",
    "CODE_ALPHABET",
    "CODE_RULE",
    "COUNT_EXPIRED",
    "CREATED_V2_DEFAULTS",
    "DEFAULT_HOLD_SECONDS",
    "DISCOUNT_TYPES",
    "FIXED",
    "FREE_SHIPPING",
    "GENERATED_ALPHABET",
    "GENERATED_LENGTH",
    "IMMUTABLE_FIELDS",
    "INACTIVE",
    "MAX_HOLD_SECONDS",
    "MUTABLE_FIELDS",
    "NAMESPACE",
    "PERCENTAGE",
    "RESERVATION_CONFIRMED",
    "RESERVATION_EXPIRED",
    "RESERVATION_HELD",
    "RESERVATION_RELEASED",
    "SCHEDULED",
    "SCOPE_FIELDS",
    "STATUSES",
    "TIME_EXPIRED",
    "TRANSITIONS",
    "UNSET",
    "ZERO",
    "Campaign",
    "Coupon",
    "CustomerUsage",
    "Item",
    "Order",
    "Quote",
    "Redemption",
    "Reservation",
    "Scope",
    "Unset",
    "as_order",
    "ascii_upper",
    "check_customer_id",
    "check_discount",
    "check_terms",
    "confirmed_redemption_id_for",
    "coupon_id_for",
    "customer_usage_id_for",
    "generate_code",
    "live_holds",
    "normalize_code",
    "normalize_prefix",
    "raise_immutable",
    "redemption_id_for",
    "reservation_id_for",
    "without",
]
