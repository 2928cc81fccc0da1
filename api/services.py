"""The objects a running API shares: the ledger, the read model, the SQL stores."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from psycopg_pool import ConnectionPool

from api.database import apply_schema, eventsourcing_env, open_ledger, release_database, resolve_database
from api.idempotency import IdempotencyStore
from api.key_listener import KeyListener
from api.replica import ReplicaReads
from api.retailers import Retailers
from api.settings import Settings
from api.shop.orders import Checkout
from api.shop.records import cleanup_expired_sessions
from api.shop.sessions import Sessions
from api.shop.stock import lock_rows
from api.signing import DigestSigner
from api.throttle import Throttle, delete_idle_rate_limits
from ledger.application import CouponLedger
from ledger.digest import AuditLog
from ledger.event_store import (
    CONNECT_TIMEOUT,
    POOL_TIMEOUT,
    RECONNECT_TIMEOUT,
    LedgerRecorder,
    check_connection,
    is_database_unavailable,
    session_timeouts,
)
from projections.coupons import CouponsView, construct_view
from projections.leader import COUPONS_PROJECTION, ProjectionLeader
from projections.sweeper import Chore, Sweeper
from projections.webhooks import WEBHOOKS_PROJECTION, Webhooks
from projections.webhooks.store import WebhookStore


def cleanup_chores(pool: ConnectionPool, ledger: CouponLedger, settings: Settings) -> list[Chore]:
    """The sweeper's cleanup chores besides recording expired holds (expired checkout sessions and
    stock holds, idle rate-limit rows): each a callable taking no argument, run after every sweep
    by the one sweeping process (the API's when it projects, else `coupon-ledger project`)."""
    return [
        functools.partial(delete_idle_rate_limits, pool, settings.throttle_window),
        functools.partial(cleanup_expired_sessions, pool),
    ]


@dataclass
class Services:
    settings: Settings
    database_url: str
    ledger: CouponLedger
    coupons_view: CouponsView
    retailers: Retailers
    checkout: Checkout
    sessions: Sessions
    idempotency: IdempotencyStore
    pool: ConnectionPool
    throttle: Throttle
    leader: ProjectionLeader | None
    audit_log: AuditLog
    signer: DigestSigner
    webhook_store: WebhookStore
    embedded: bool = False
    sweeper: Sweeper | None = None
    key_listener: KeyListener | None = None
    replica: ReplicaReads | None = None
    """The read models and event log on DATABASE_REPLICA_URL, if set (api/read_model.py and
    api/event_log_reads.py decide when to use it)."""
    webhooks: Webhooks | None = None

    @classmethod
    def open(cls, settings: Settings) -> Services:
        url, embedded = resolve_database(settings.database_url, settings.data_dir)
        try:
            return cls._open(settings, url, embedded)
        except BaseException:
            release_database(embedded, settings.data_dir)
            raise

    @classmethod
    def _open(cls, settings: Settings, url: str, embedded: bool) -> Services:
        apply_schema(url)
        env = eventsourcing_env(url)
        ledger = open_ledger(env)
        ledger.writer.lock_rows = lock_rows  # the rows (and shoppers) the shop's works lock, taken in order
        # Bounded waits: a request that cannot get a connection in POOL_TIMEOUT is answered 503.
        pool = ConnectionPool(
            url,
            min_size=1,
            max_size=8,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT, "options": session_timeouts()},
            timeout=POOL_TIMEOUT,
            reconnect_timeout=RECONNECT_TIMEOUT,
            check=check_connection,  # a connection that died with a restart is replaced
            open=True,
        )
        # The coupons projection (with its redemption log) and the webhooks' outbox, from one subscription.
        leader = (
            ProjectionLeader(url, env, projections=(COUPONS_PROJECTION, WEBHOOKS_PROJECTION)).start()
            if settings.run_projections
            else None
        )
        sessions = Sessions(pool, ledger, settings.session_ttl_seconds, settings.max_holds_per_shopper)
        services = cls(
            settings=settings,
            database_url=url,
            ledger=ledger,
            coupons_view=construct_view(env),
            retailers=Retailers(pool),
            checkout=Checkout(pool, ledger, sessions),
            sessions=sessions,
            idempotency=IdempotencyStore(pool, settings.idempotency_lease_seconds, settings.idempotency_wait_seconds),
            pool=pool,
            throttle=Throttle.from_settings(pool, settings),
            leader=leader,
            audit_log=AuditLog(ledger.recorder),  # type: ignore[arg-type]
            signer=DigestSigner.load_or_create(pool),
            webhook_store=WebhookStore(pool),
            embedded=embedded,
        )
        # Until it listens, and whenever it cannot, every request's key is looked up in the database.
        services.key_listener = KeyListener(url, services.retailers).start()
        if settings.database_replica_url:
            assert isinstance(ledger.recorder, LedgerRecorder)  # eventsourcing_env's APPLICATION_RECORDER_TOPIC
            services.replica = ReplicaReads(
                settings.database_replica_url,
                ledger.name,
                wait_seconds=settings.replica_wait_seconds,
                events_table=ledger.recorder.events_table_name,
            )
        if settings.run_projections:  # where the projection runs, so does the sweeper (one sweeps per database)
            services.sweeper = Sweeper(
                url, ledger, services.coupons_view, interval=settings.sweep_interval, chores=services.chores()
            ).start()
            services.webhooks = Webhooks(url, settings.webhook_dispatch()).start()
        return services

    def chores(self) -> list[Chore]:
        return cleanup_chores(self.pool, self.ledger, self.settings)

    def unready_reason(self) -> tuple[str, str] | None:
        """None if the service can answer requests; else why not: (reason, message)."""
        if not self.ledger.writer.is_alive():
            return "writer_stopped", "The ledger's writer thread has stopped."
        error: Exception | None = None
        for _ in range(2):  # a second try: the first may have met a connection the database dropped
            try:
                with self.pool.connection(timeout=POOL_TIMEOUT) as conn:
                    conn.execute("SELECT 1")
                return None
            except Exception as caught:
                if not is_database_unavailable(caught):
                    raise
                error = caught
        return "database_unavailable", f"The database cannot be reached ({type(error).__name__})."

    def close(self) -> None:
        try:
            if self.key_listener is not None:
                self.key_listener.stop()
            if self.webhooks is not None:
                self.webhooks.stop()
            if self.sweeper is not None:
                self.sweeper.stop()
            if self.leader is not None:
                self.leader.stop()
            self.coupons_view.datastore.close()
            if self.replica is not None:
                self.replica.close()
            self.ledger.close()
            self.pool.close()
        finally:
            release_database(self.embedded, self.settings.data_dir)
