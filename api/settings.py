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
    # How often the sweeper records the expiry of holds past their TTL and runs the other cleanup
    # chores (seconds). A hold stops counting at its expires_at whatever this is.
    sweep_interval: float = Field(default=5.0, gt=0, le=3600)
