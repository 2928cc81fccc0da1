"""One settings object, read from the environment."""

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COUPON_LEDGER_", populate_by_name=True)

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "COUPON_LEDGER_DATABASE_URL")
    )
    data_dir: Path = Path(".coupon-ledger")
    read_wait_timeout: float = 5.0
    max_body_bytes: int = 64 * 1024
    run_projections: bool = True
    # Checkout sessions end this long after their last change (their coupon and stock holds with them).
    session_ttl_seconds: int = Field(default=30 * 60, ge=1, le=86_400)
    # Idempotency-Key of the routes whose keys are not in the ledger (api/idempotency.py): a request
    # under a key another one is still running waits up to idempotency_wait_seconds for its
    # response; a claim not completed within idempotency_lease_seconds (its process died) is taken over.
    idempotency_wait_seconds: float = Field(default=10.0, ge=0)
    idempotency_lease_seconds: float = Field(default=30.0, gt=0)
