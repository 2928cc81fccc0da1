"""Coupons: create, change, transition, read, and their audit trail."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from api.schemas.common import (
    MAX_INT32,
    PATH_CODE_PATTERN,
    Amount,
    Boolean,
    DiscountType,
    IdList,
    Int,
    NewCode,
    Percentage,
    PositiveAmount,
    Request,
    Status,
    Timestamp,
    UtcTimestamp,
    json_schema_of,
)
from ledger.application import RecordedEvent
from ledger.domain import (
    FREE_SHIPPING,
    SCOPE_FIELDS,
    TRANSITIONS,
    UNSET,
    Coupon,
    Unset,
    raise_immutable,
)
from projections.coupons import CouponRow


def _coupon_terms_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The rules of each discount type, documented as one variant per type: a percentage is at
    most 100 and may be capped, a fixed amount is not capped, free shipping takes no value."""
    properties = schema["properties"]
    no_value = {"type": "null"}
    schema["oneOf"] = [
        {
            "title": "Percentage coupon",
            "properties": {"discount_type": {"const": "percentage"}, "discount_value": json_schema_of(Percentage)},
            "required": ["discount_value"],
        },
        {
            "title": "Fixed-amount coupon",
            "properties": {
                "discount_type": {"const": "fixed"},
                "discount_value": json_schema_of(PositiveAmount),
                "max_discount_amount": no_value,
            },
            "required": ["discount_value"],
        },
        {
            "title": "Free-shipping coupon",
            "properties": {
                "discount_type": {"const": "free_shipping"},
                "discount_value": no_value,
                "max_discount_amount": no_value,
            },
        },
    ]
    properties["discount_value"] = {
        "description": (
            "Required for percentage (greater than 0, at most 100) and fixed (greater than 0); "
            "absent or null for free_shipping. See the variants."
        )
    }
    properties["max_discount_amount"]["description"] = "Caps the discount of a percentage coupon (percentage only)."
    examples: list[dict[str, Any]] = [
        {
            "discount_type": "percentage",
            "discount_value": "10",
            "min_order_value": "50.00",
            "max_discount_amount": "30.00",
            "max_uses": 100,
            "max_uses_per_customer": 1,
            "starts_at": "2027-01-01T00:00:00Z",
            "expires_at": "2027-01-31T23:59:59Z",
        },
        {"discount_type": "fixed", "discount_value": 5, "scope": {"category_ids": ["shoes"]}},
        {"discount_type": "free_shipping", "min_order_value": "40.00", "public": True},
    ]
    if "code" in properties:  # CouponCreate: the code first
        schema["properties"] = {"code": properties.pop("code"), **properties}
        schema["required"] = ["code", *[name for name in schema.get("required", []) if name != "code"]]
        codes = ["SAVE10", "FIVEOFF", "SHIPFREE"]
        examples = [{"code": code, **example} for code, example in zip(codes, examples, strict=True)]
    schema["examples"] = examples


class ScopeIn(Request):
    """Which lines of an order a coupon discounts: a line is eligible if it matches one of the
    inclusion lists (any line, when all are empty) and neither exclusion list."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"category_ids": ["shoes"], "excluded_product_ids": ["sku-sale-1"]}]},
    )

    product_ids: IdList = []
    variant_ids: IdList = []
    category_ids: IdList = []
    excluded_product_ids: IdList = []
    excluded_category_ids: IdList = []


class CouponTerms(Request):
    """Every term of a coupon but its code (a campaign's template is these terms)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_coupon_terms_schema)

    discount_type: DiscountType
    discount_value: PositiveAmount | None = Field(default=None, validate_default=True)
    min_order_value: Amount | None = None
    max_discount_amount: PositiveAmount | None = None
    starts_at: Timestamp | None = None
    expires_at: Timestamp | None = None
    max_uses: Int(1, MAX_INT32, 100) | None = None  # type: ignore[valid-type]
    max_uses_per_customer: Int(1, MAX_INT32, 1) | None = None  # type: ignore[valid-type]
    scope: ScopeIn | None = None
    public: Boolean = False
    is_active: Boolean = True

    @field_validator("discount_value")
    @classmethod
    def _value_fits_the_type(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        discount_type = info.data.get("discount_type")
        if discount_type == "free_shipping" and value is not None:
            raise ValueError("a free_shipping coupon takes no discount_value (its discount is the shipping)")
        if discount_type in ("percentage", "fixed") and value is None:
            raise ValueError(f"is required for a {discount_type} coupon")
        return value

    def terms(self) -> dict[str, Any]:
        """The terms as the ledger takes them (scope as a dict of lists of ids), without a code."""
        return self.model_dump(include=set(CouponTerms.model_fields))


class CouponCreate(CouponTerms):
    code: NewCode


class ScopePublic(BaseModel):
    """A coupon's scope: ids as text, sorted; an empty list restricts nothing."""

    product_ids: list[str]
    variant_ids: list[str]
    category_ids: list[str]
    excluded_product_ids: list[str]
    excluded_category_ids: list[str]

    @classmethod
    def of(cls, scope: Mapping[str, list[str]] | None) -> ScopePublic | None:
        if not scope:
            return None
        return cls(**{name: sorted(scope.get(name) or []) for name in SCOPE_FIELDS})


class CouponPublic(BaseModel):
    id: UUID
    code: str = Field(pattern=PATH_CODE_PATTERN, examples=["SAVE10"])
    discount_type: DiscountType
    discount_value: Amount | None = Field(description="Null for free_shipping (its discount is the shipping).")
    min_order_value: Amount | None
    max_discount_amount: Amount | None
    starts_at: UtcTimestamp | None
    expires_at: UtcTimestamp | None
    max_uses: int | None
    max_uses_per_customer: int | None
    uses_count: int = Field(description="Uses made minus uses given back by reversals.")
    holds: int = Field(description="Live holds: uses reserved by checkouts and not yet confirmed, released or expired.")
    is_active: bool
    status: Status = Field(
        description=(
            "Derived when read: inactive (deactivated), scheduled (before starts_at), time_expired "
            "(at or after expires_at), count_expired (uses reached max_uses), else active."
        )
    )
    scope: ScopePublic | None
    public: bool
    campaign_id: UUID | None
    created_at: UtcTimestamp

    @classmethod
    def from_coupon(cls, coupon: Coupon, now: datetime) -> CouponPublic:
        return cls(
            id=coupon.id,
            code=coupon.code,
            discount_type=coupon.discount_type,  # type: ignore[arg-type]
            discount_value=shown_discount_value(coupon.discount_type, coupon.discount_value),
            min_order_value=coupon.min_order_value,
            max_discount_amount=coupon.max_discount_amount,
            starts_at=coupon.starts_at,
            expires_at=coupon.expires_at,
            max_uses=coupon.max_uses,
            max_uses_per_customer=coupon.max_uses_per_customer,
            uses_count=coupon.uses_count,
            holds=coupon.held(now),
            is_active=coupon.is_active,
            status=coupon.status(now),  # type: ignore[arg-type]
            scope=ScopePublic.of(coupon.scope),
            public=coupon.public,
            campaign_id=coupon.campaign_id,
            created_at=coupon.created_on,
        )

    @classmethod
    def from_row(cls, row: CouponRow) -> CouponPublic:
        return cls(
            id=row.id,
            code=row.code,
            discount_type=row.discount_type,  # type: ignore[arg-type]
            discount_value=shown_discount_value(row.discount_type, row.discount_value),
            min_order_value=row.min_order_value,
            max_discount_amount=row.max_discount_amount,
            starts_at=row.starts_at,
            expires_at=row.expiry_date,
            max_uses=row.max_uses,
            max_uses_per_customer=row.max_uses_per_customer,
            uses_count=row.uses_count,
            holds=row.holds,
            is_active=row.is_active,
            status=row.status,  # type: ignore[arg-type]
            scope=ScopePublic.of(row.scope),
            public=row.public,
            campaign_id=row.campaign_id,
            created_at=row.created_at,
        )


def shown_discount_value(discount_type: str, value: Decimal) -> Decimal | None:
    return None if discount_type == FREE_SHIPPING else value


class CouponPage(BaseModel):
    data: list[CouponPublic]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


PATCH_IMMUTABLE = ("code", "discount_type", "discount_value", "campaign_id")


def _patch_schema(schema: dict[str, Any]) -> None:
    schema["description"] = (
        "Only the fields sent change; a field sent as null is removed (public: false). "
        "discount_type, discount_value, code and campaign_id never change (422 FIELD_IMMUTABLE); "
        "is_active changes with /activate, /deactivate or /transitions."
    )
    schema["examples"] = [
        {"max_uses": 500, "expires_at": "2027-03-31T23:59:59Z"},
        {"min_order_value": None, "scope": {"excluded_category_ids": ["gift-cards"]}, "public": True},
    ]


class CouponPatch(Request):
    """PATCH /v1/coupons/{code}: the mutable terms."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_patch_schema)

    min_order_value: Amount | None = None
    starts_at: Timestamp | None = None
    expires_at: Timestamp | None = None
    max_uses: Int(1, MAX_INT32, 100) | None = None  # type: ignore[valid-type]
    max_uses_per_customer: Int(1, MAX_INT32, 1) | None = None  # type: ignore[valid-type]
    max_discount_amount: PositiveAmount | None = None
    scope: ScopeIn | None = None
    public: Boolean | None = None
    is_active: SkipJsonSchema[Any] = None

    @model_validator(mode="before")
    @classmethod
    def _immutable_first(cls, data: Any) -> Any:
        """An immutable field is named before anything else of the body is checked."""
        if isinstance(data, Mapping):
            for name in data:
                if name in PATCH_IMMUTABLE:
                    raise_immutable(name)
        return data

    @field_validator("is_active")
    @classmethod
    def _not_here(cls, value: Any) -> Any:
        raise ValueError("cannot be changed with PATCH: use POST /activate, /deactivate or /transitions")

    def changes(self) -> dict[str, Any]:
        """The fields sent, as the ledger takes them (null removes; public null is false)."""
        changes: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name == "scope":
                value = value.model_dump() if value is not None else None
            elif name == "public":
                value = bool(value)
            changes[name] = value
        return changes


TRANSITION_EVENTS = tuple(TRANSITIONS)
TransitionEvent = Literal["activate", "deactivate", "extend_expiry_and_activate", "reconcile_count_status"]


def _transition_schema(schema: dict[str, Any]) -> None:
    schema["oneOf"] = [
        {
            "title": "Extend expiry and activate",
            "properties": {"event": {"const": "extend_expiry_and_activate"}},
            "required": ["expires_at"],
        },
        {
            "title": "Another event",
            "properties": {"event": {"enum": [e for e in TRANSITION_EVENTS if e != "extend_expiry_and_activate"]}},
        },
    ]
    schema["examples"] = [
        {"event": "deactivate"},
        {"event": "extend_expiry_and_activate", "expires_at": "2027-06-30T23:59:59Z"},
    ]


class TransitionRequest(Request):
    """An event of the platform's state machine."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_transition_schema)

    event: TransitionEvent = Field(
        description=(
            "activate (from inactive, time_expired, count_expired), deactivate (from active, scheduled), "
            "extend_expiry_and_activate (from any status; takes expires_at), reconcile_count_status "
            "(from inactive, active, scheduled, count_expired). Any other move is 409 INVALID_TRANSITION."
        )
    )
    expires_at: Timestamp | None = Field(
        default=None,
        description=(
            "The new expiry (null: none), for extend_expiry_and_activate (required) or activate "
            "(optional; an expired coupon needs one)."
        ),
    )

    def new_expiry(self) -> datetime | Unset | None:
        return self.expires_at if "expires_at" in self.model_fields_set else UNSET


class ActivateRequest(Request):
    """The optional body of /activate: a new expiry (null: none), the platform's extend-expiry-and-activate."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"expires_at": "2027-06-30T23:59:59Z"}]})

    expires_at: Timestamp | None = None

    def new_expiry(self) -> datetime | Unset | None:
        return self.expires_at if "expires_at" in self.model_fields_set else UNSET


HASH_FIELD = Field(pattern="^[0-9a-f]{64}$", examples=["9f2c" + "0" * 60])


class EventPublic(BaseModel):
    """An event as served, and its links in its stream's hash chain: ``hash`` is sha256 of
    ``prev_hash`` followed by the canonical JSON (sorted keys, no spaces, non-ASCII unescaped) of
    ``version``, ``type``, ``occurred_at`` and ``data`` exactly as served here; ``prev_hash`` of
    version 1 is 64 zeros. ``data.actor`` names who acted (a key's id and kind and the request's
    id, or ``cli``/``sweeper``), never a key."""

    version: int
    type: str
    occurred_at: str = Field(examples=["2027-01-31T23:59:59.123456Z"])
    data: dict[str, Any]
    prev_hash: str = HASH_FIELD
    hash: str = HASH_FIELD

    @classmethod
    def from_event(cls, event: RecordedEvent) -> EventPublic:
        return cls.model_construct(
            version=event.version,
            type=event.type,
            occurred_at=event.occurred_at,
            data=event.data,
            prev_hash=event.prev_hash,
            hash=event.hash,
        )


class EventPage(BaseModel):
    data: list[EventPublic]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")
