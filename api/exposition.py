"""The body of GET /metrics: Prometheus text of every process of this server, and the figures read
from the database at scrape time.

Under `coupon-ledger serve` the workers and the `project` child each keep their metrics in files of
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode, api/metrics_folder.py): any
worker answering a scrape reads them all and sums them (gauges as their mode says), so a scrape
sees the same totals whichever worker answers. Elsewhere (the app run in-process, as tests do) the
process's own metrics are exported.
"""

from __future__ import annotations

import os

from psycopg_pool import ConnectionPool

from api.metrics_folder import FOLDER_ENV
from ledger.application import CouponLedger
from ledger.metrics import metrics
from projections.scrape_figures import ScrapeFigures


def exposition(pool: ConnectionPool, ledger: CouponLedger) -> tuple[bytes, str]:
    """(body, content type) of one scrape."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    folder = os.environ.get(FOLDER_ENV)
    if folder:
        MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    else:
        made = metrics()
        if made is not None:
            registry.register(made.registry)
    registry.register(ScrapeFigures(pool, ledger))
    return generate_latest(registry), CONTENT_TYPE_LATEST
