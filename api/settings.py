"""One settings object, read from the environment."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:  # imported when asked for: a command that sends no webhooks does not load them
    from projections.webhooks.dispatcher import DispatchSettings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COUPON_LEDGER_", populate_by_name=True)

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "COUPON_LEDGER_DATABASE_URL")
    )
    # A streaming replica (hot standby) of DATABASE_URL: the read-model routes read from it once it
    # has replayed every write acknowledged before the request (api/replica.py); none by default.
    database_replica_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_REPLICA_URL", "COUPON_LEDGER_DATABASE_REPLICA_URL")
    )
    # How long a read waits for the replica to replay what it needs before it reads from the primary.
    replica_wait_seconds: float = Field(default=0.25, ge=0, le=10)
    data_dir: Path = Path(".coupon-ledger")
    read_wait_timeout: float = 5.0
    max_body_bytes: int = 64 * 1024
    run_projections: bool = True
    # Checkout sessions end this long after their last change (their coupon and stock holds with them).
    session_ttl_seconds: int = Field(default=30 * 60, ge=1, le=86_400)
    # Checkout sessions holding a coupon use or stock that one shopper may have at once under a
    # publishable key: per client address, and per customer_id (past it: 429 RATE_LIMITED).
    max_holds_per_shopper: int = Field(default=5, ge=1, le=100_000)
    # Idempotency-Key of the routes whose keys are not in the ledger (api/idempotency.py): a request
    # under a key another one is still running waits up to idempotency_wait_seconds for its
    # response; a claim not completed within idempotency_lease_seconds (its process died) is taken over.
    idempotency_wait_seconds: float = Field(default=10.0, ge=0)
    idempotency_lease_seconds: float = Field(default=30.0, gt=0)
    # Campaign codes one retailer may generate per UTC day (api/campaign_quota.py): a campaign that
    # would go past it is refused (429 RATE_LIMITED) before any code is made.
    max_codes_per_day: int = Field(default=1_000_000, ge=1)
    # How often the sweeper records the expiry of holds past their TTL and runs the other cleanup
    # chores (seconds). A hold stops counting at its expires_at whatever this is.
    sweep_interval: float = Field(default=5.0, gt=0, le=3600)
    # The brute-force limit (api/throttle.py): failed code lookups one shopper of one key may make
    # in a window before it is answered 429 RATE_LIMITED.
    throttle_budget: int = Field(default=20, ge=1, le=1_000_000)
    throttle_window: int = Field(default=60, ge=1, le=86_400, description="seconds")
    # Webhooks (projections/webhooks/): the dispatcher's worker threads in the projection process
    # (0: none sends), how often an idle one looks for due deliveries, the HTTP timeout, and the
    # retries: the first after webhook_retry_base_seconds, doubling up to webhook_retry_max_seconds
    # (jittered), for webhook_retry_window_seconds from when the delivery was made, then failed.
    webhook_workers: int = Field(default=2, ge=0, le=64)
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    webhook_retry_base_seconds: float = Field(default=30.0, gt=0, le=86_400)
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0, le=86_400)
    webhook_retry_window_seconds: float = Field(default=86_400.0, gt=0, le=7 * 86_400)
    # Peers whose X-Forwarded-For is believed: comma-separated IPs or CIDRs (none by default).
    trusted_proxies: Annotated[tuple[IPNetwork, ...], NoDecode] = ()
    # Logs (api/logs.py): JSON lines, or lines for a person to read; unset: console when stderr is a
    # terminal, else JSON. The level applies to every logger (ours, uvicorn's, the library's).
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # One access line per request (api/access.py), and the metrics of GET /metrics (ledger/metrics.py).
    access_log: bool = True
    metrics: bool = True

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _any_case(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            return value.upper() if info.field_name == "log_level" else (value.lower() or None)
        return value

    def webhook_dispatch(self) -> DispatchSettings:
        from projections.webhooks.dispatcher import DispatchSettings

        return DispatchSettings(
            workers=self.webhook_workers,
            poll_interval=self.webhook_poll_seconds,
            timeout=self.webhook_timeout_seconds,
            retry_base=self.webhook_retry_base_seconds,
            retry_max=self.webhook_retry_max_seconds,
            retry_window=self.webhook_retry_window_seconds,
        )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in (p.strip() for p in value.split(",")) if part]
        if isinstance(value, list | tuple):
            try:
                return tuple(ipaddress.ip_network(v, strict=False) if isinstance(v, str) else v for v in value)
            except ValueError as error:
                raise ValueError(f"trusted proxies must be IP addresses or CIDR networks: {error}") from None
        return value
