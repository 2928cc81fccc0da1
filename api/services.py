"""The objects a running API shares: the ledger, the read model, the SQL stores."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import ConnectionPool

from api.checkout import Checkout
from api.database import apply_schema, eventsourcing_env, open_ledger, resolve_database
from api.retailers import Retailers
from api.settings import Settings
from ledger.application import CouponLedger
from projections.coupons import CouponsView, construct_view
from projections.runner import ProjectionLeader


@dataclass
class Services:
    settings: Settings
    database_url: str
    ledger: CouponLedger
    coupons_view: CouponsView
    retailers: Retailers
    checkout: Checkout
    pool: ConnectionPool
    leader: ProjectionLeader | None

    @classmethod
    def open(cls, settings: Settings) -> Services:
        url, _embedded = resolve_database(settings.database_url, settings.data_dir)
        apply_schema(url)
        env = eventsourcing_env(url)
        ledger = open_ledger(env)
        pool = ConnectionPool(url, min_size=1, max_size=8, kwargs={"autocommit": True}, open=True)
        leader = ProjectionLeader(url, env).start() if settings.run_projections else None
        return cls(
            settings=settings,
            database_url=url,
            ledger=ledger,
            coupons_view=construct_view(env),
            retailers=Retailers(pool),
            checkout=Checkout(pool, ledger),
            pool=pool,
            leader=leader,
        )

    def close(self) -> None:
        if self.leader is not None:
            self.leader.stop()
        self.coupons_view.datastore.close()
        self.ledger.close()
        self.pool.close()
