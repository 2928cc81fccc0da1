"""The one error shape of every 4xx and 5xx response."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    Field,
)


class ErrorBody(BaseModel):
    code: str = Field(
        description="Stable machine code: branch on this, never on message.", examples=["COUPON_NOT_FOUND"]
    )
    message: str = Field(description="For people.")
    details: dict[str, Any] = Field(description="Per code; VALIDATION_FAILED has errors: [{field, message}].")
    request_id: str | None = Field(description="Also in the X-Request-ID header.")


class Error(BaseModel):
    """The one error shape of every 4xx and 5xx response."""

    error: ErrorBody
