"""Every metric the service exports (Prometheus, every name prefixed ``coupon_ledger_``), in one place.

Labels are bounded sets only: a method, a route template, a status, an error code, an event type,
an outcome. Never a retailer, a code, a customer or a key.

The metrics are made on first use (``metrics()``), not at import: prometheus-client decides when it
makes its first metric whether values live in this process's memory or in files of
``PROMETHEUS_MULTIPROC_DIR`` (its multiprocess mode, which `coupon-ledger serve` sets up for its
workers and its `project` child, api/metrics_folder.py), and a process may import this module
before serve has chosen the folder. ``configure(enabled=False)`` (``COUPON_LEDGER_METRICS=off``)
makes ``metrics()`` answer None: callers then skip their updates altogether.

What is not here: the figures read from the database when /metrics is scraped (the projection's
lag, the holds live), projections/scrape_figures.py.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from ledger.errors import LedgerError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX: Final = "coupon_ledger_"

# The error codes of DESIGN.md §4 (and the few more the API answers): a refusal with any other code
# is counted as OTHER, so the label stays a bounded set whatever a future error class says.
ERROR_CODES: Final = frozenset(
    {
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "COUPON_NOT_FOUND",
        "REDEMPTION_NOT_FOUND",
        "RESERVATION_NOT_FOUND",
        "CAMPAIGN_NOT_FOUND",
        "NOT_FOUND",
        "COUPON_CODE_TAKEN",
        "IDEMPOTENCY_KEY_REUSED",
        "IDEMPOTENCY_KEY_IN_USE",
        "SESSION_COMPLETED",
        "OUT_OF_STOCK",
        "INVALID_TRANSITION",
        "PAYLOAD_TOO_LARGE",
        "VALIDATION_FAILED",
        "COUPON_INACTIVE",
        "COUPON_NOT_STARTED",
        "COUPON_EXPIRED",
        "USAGE_LIMIT_REACHED",
        "CUSTOMER_LIMIT_REACHED",
        "CAMPAIGN_BUDGET_EXHAUSTED",
        "MIN_ORDER_NOT_MET",
        "COUPON_NOT_APPLICABLE",
        "CUSTOMER_ID_REQUIRED",
        "RESERVATION_EXPIRED",
        "FIELD_IMMUTABLE",
        "SUBTOTAL_MISMATCH",
        "RATE_LIMITED",
        "SERVICE_UNAVAILABLE",
        "INTERNAL_ERROR",
    }
)

# Webhook deliveries end in one of these (the label's whole set).
WEBHOOK_OUTCOMES: Final = ("delivered", "failed", "retried", "gave_up")

LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def error_code_label(code: str) -> str:
    return code if code in ERROR_CODES else "OTHER"


class Metrics:
    """The service's metrics. Counters end in ``_total`` once exported (prometheus-client adds it)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        # A registry of their own: the default one also holds the process and GC collectors, whose
        # names are not ours. In multiprocess mode the values are read from the folder's files instead.
        self.registry: CollectorRegistry = CollectorRegistry()
        r = self.registry
        p = PREFIX
        # --- HTTP (api/access.py: measured at the ASGI level, for the routed and the direct routes)
        self.http_requests: Counter = Counter(
            f"{p}http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration: Histogram = Histogram(
            f"{p}http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # --- the ledger (ledger/writer.py)
        self.redemptions: Counter = Counter(
            f"{p}redemptions",
            "Redemptions committed (Coupon.Redeemed events saved: apply, confirm, checkout); a replayed"
            " Idempotency-Key is not counted again.",
            registry=r,
        )
        self.events: Counter = Counter(
            f"{p}events_saved", "Events saved to the log, by type (Coupon.Redeemed, ...).", ["type"], registry=r
        )
        self.refusals: Counter = Counter(
            f"{p}refusals",
            "Commands the ledger refused, by error code (DESIGN.md section 4; OTHER for any other).",
            ["code"],
            registry=r,
        )
        self.batch_commands: Histogram = Histogram(
            f"{p}writer_batch_commands",
            "Commands decided and saved together in one batch of the writer.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.save_seconds: Histogram = Histogram(
            f"{p}writer_commit_seconds",
            "Time of the writer's save() of a batch: one transaction, one lock of the events table, one commit.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.conflicts: Counter = Counter(
            f"{p}writer_conflicts",
            "Saves rejected and tried again: another process wrote the same aggregates first (version),"
            " a lock was not granted in time or a deadlock (lock), a work of the batch was refused (work).",
            ["cause"],
            registry=r,
        )
        self.redecided: Counter = Counter(
            f"{p}writer_retried_commands",
            "Commands decided again after a rejected save (their aggregates moved or a sibling was refused).",
            registry=r,
        )
        self.gave_up: Counter = Counter(
            f"{p}writer_gave_up_commands",
            "Commands answered 503 after too many conflicts or lock waits.",
            registry=r,
        )
        self.queue_full: Counter = Counter(
            f"{p}writer_queue_full",
            "Commands refused at once (503 queue_full): the writer's queue was full.",
            registry=r,
        )
        self.queue_depth: Gauge = Gauge(
            f"{p}writer_queue_depth",
            "Commands waiting for the writer (when it last took or finished a batch), summed over live processes.",
            multiprocess_mode="livesum",
            registry=r,
        )
        # --- the projection (projections/runner.py)
        self.projected_events: Counter = Counter(
            f"{p}projection_events", "Events applied to the read model by the projection.", registry=r
        )
        self.projection_batch_seconds: Histogram = Histogram(
            f"{p}projection_batch_seconds",
            "Time to apply one batch of events to the read model (one transaction).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # --- the sweeper (projections/sweeper.py, api/shop/records.py)
        self.sweeps: Counter = Counter(f"{p}sweeper_sweeps", "Sweeps finished.", registry=r)
        self.holds_expired: Counter = Counter(
            f"{p}sweeper_holds_expired", "Holds whose expiry the sweeper recorded (ReservationExpired).", registry=r
        )
        self.sessions_ended: Counter = Counter(
            f"{p}sweeper_sessions_ended", "Checkout sessions the sweeper marked expired.", registry=r
        )
        self.stock_holds_deleted: Counter = Counter(
            f"{p}sweeper_stock_holds_deleted",
            "Stock holds the sweeper deleted (expired or their session ended).",
            registry=r,
        )
        self.chore_failures: Counter = Counter(f"{p}sweeper_chore_failures", "Sweeper chores that raised.", registry=r)
        # --- webhooks (incremented by the webhook delivery, when there is one)
        self.webhook_deliveries: Counter = Counter(
            f"{p}webhook_deliveries",
            f"Webhook delivery attempts, by outcome ({', '.join(WEBHOOK_OUTCOMES)}).",
            ["outcome"],
            registry=r,
        )


_lock = threading.Lock()
_made: Metrics | None = None
_enabled = True


def configure(enabled: bool) -> None:
    """Whether this process measures at all (``COUPON_LEDGER_METRICS``); on by default."""
    global _enabled
    _enabled = enabled


def add_observations(histogram: Any, total: float, counts: Sequence[float]) -> None:
    """What observing values that sum to ``total``, ``counts[i]`` of them in the histogram's bucket
    ``i`` (its bounds, then +Inf), does to a labelled Histogram, with one update of its sum and one
    of each bucket that got any. Relies on prometheus-client's Histogram keeping ``_sum`` and one
    non-cumulative value per bucket in ``_buckets`` (0.26.0, pinned): tests/unit/test_request_tally.py
    compares the result with observe()'s, sample for sample."""
    histogram._sum.inc(total)
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)


def metrics() -> Metrics | None:
    """The process's metrics, made on first use; None when metrics are turned off."""
    if not _enabled:
        return None
    made = _made
    if made is not None:
        return made
    return _make()


def _make() -> Metrics:
    global _made
    with _lock:
        if _made is None:
            _made = Metrics()
        return _made


# The writer's tallies (ledger/writer.py).
REDEEMED = "Coupon.Redeemed"


def count_saved(m: Metrics, commands: int, events: list[Any]) -> None:
    """A committed batch: its size, its events by type, its redemptions."""
    m.batch_commands.observe(commands)
    by_type: dict[str, int] = {}
    for event in events:
        name = type(event).__qualname__
        by_type[name] = by_type.get(name, 0) + 1
    for name, count in by_type.items():
        m.events.labels(name).inc(count)
    redeemed = by_type.get(REDEEMED)
    if redeemed:
        m.redemptions.inc(redeemed)


def count_refusals(m: Metrics, commands: Sequence[Any]) -> None:
    """The commands answered with a refusal, by its code (each caller's answer counted once)."""
    for command in commands:
        outcome = command.outcome
        if outcome is not None and not outcome[0] and isinstance(outcome[1], LedgerError):
            m.refusals.labels(error_code_label(outcome[1].code)).inc()
