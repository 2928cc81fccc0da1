"""Request and response models. Amounts are Decimals in, two-place strings out.

Every value a request carries goes through one of the shared types below, so that whatever is
accepted can be stored: text without NUL (and valid Unicode) within its length, integers within
their PostgreSQL column, timestamps PostgreSQL stores (normalised to UTC), amounts that fit
numeric(14,2), codes of the code alphabet. Each type documents in OpenAPI exactly what it admits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from annotated_types import Ge, Le
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from ledger.application import RecordedEvent
from ledger.campaigns import MAX_CAMPAIGN_CODES
from ledger.commands import Hold, Reversal
from ledger.domain import (
    BLANK_CHARACTERS,
    CODE_RULE,
    DEFAULT_HOLD_SECONDS,
    FREE_SHIPPING,
    GENERATED_LENGTH,
    MAX_HOLD_SECONDS,
    SCOPE_FIELDS,
    TRANSITIONS,
    UNSET,
    Campaign,
    Coupon,
    Item,
    Quote,
    Reservation,
    Unset,
    normalize_code,
    normalize_prefix,
    raise_immutable,
)
from ledger.errors import InvalidCoupon
from ledger.handlers import COUPON_FIELDS
from ledger.money import MAX_AMOUNT, format_amount, parse_amount
from ledger.timestamps import MAX_TIMESTAMP, MIN_TIMESTAMP, format_timestamp, to_utc
from projections.coupons import CouponRow

# PostgreSQL's integer and bigint. A bigint in JSON is bounded further, to the integers every
# JSON parser holds exactly (2**53 - 1): beyond it "9223372036854775807" and "...999" are one
# double, so neither a client nor a schema validator could tell an id in range from one out of it.
MAX_INT32 = 2_147_483_647
MAX_BIGINT = 9_223_372_036_854_775_807
MAX_JSON_BIGINT = 2**53 - 1

NO_NUL_PATTERN = "^[^\\u0000]*$"
AMOUNT_PATTERN = "^\\d{1,12}(\\.\\d{1,2})?$"
CODE_PATTERN = "^[\\t\\n\\v\\f\\r ]*[A-Za-z0-9_-]{3,50}[\\t\\n\\v\\f\\r ]*$"
PATH_CODE_PATTERN = "^[A-Za-z0-9_-]{3,50}$"
# Local dates that may fall outside the stored range once converted to UTC (offsets reach
# +-23:59): the documented form leaves them out, the server checks the instant itself.
TIMESTAMP_PATTERN = "^(?!0001-01-0[12]|9999-12-3[01])"


def check_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


def text(min_length: int, max_length: int, example: str | None = None) -> Any:
    """Text of ``min_length`` to ``max_length`` characters without NUL."""
    schema: dict[str, Any] = {
        "type": "string",
        "minLength": min_length,
        "maxLength": max_length,
        "pattern": NO_NUL_PATTERN,
    }
    if example is not None:
        schema["examples"] = [example]
    return Annotated[
        str, Field(min_length=min_length, max_length=max_length), AfterValidator(check_text), WithJsonSchema(schema)
    ]


def _check_new_code(value: str) -> str:
    try:
        return normalize_code(value)
    except InvalidCoupon:
        raise ValueError(CODE_RULE) from None


def _check_lookup_code(value: str) -> str:
    """A code to look up: any text that can be sent is looked up (an impossible code is then
    COUPON_NOT_FOUND, like any missing one), but never text that cannot be a code at all."""
    check_text(value)
    return value


CODE_SCHEMA = {
    "type": "string",
    "minLength": 3,
    "maxLength": 100,
    "pattern": CODE_PATTERN,
    "description": "A coupon code: 3-50 of A-Z 0-9 _ - (any case; surrounding spaces are ignored).",
    "examples": ["SAVE10"],
}
NewCode = Annotated[str, Field(max_length=100), AfterValidator(_check_new_code), WithJsonSchema(CODE_SCHEMA)]
"""The code of a new coupon, normalised (trimmed, upper-cased); anything else is a 422."""
Code = Annotated[
    str, Field(min_length=1, max_length=100), AfterValidator(_check_lookup_code), WithJsonSchema(CODE_SCHEMA)
]
"""The code of an existing coupon, as sent; the ledger normalises it."""


def amount_schema(pattern: str, number: dict[str, Any], description: str, example: str) -> dict[str, Any]:
    """The documented input of an amount: a decimal string matching ``pattern``, or a JSON number
    with the ``number`` bounds, in steps of a cent."""
    return {
        "anyOf": [{"type": "string", "pattern": pattern}, {"type": "number", **number, "multipleOf": 0.01}],
        "description": description,
        "examples": [example],
    }


Amount = Annotated[
    Decimal,
    PlainValidator(parse_amount),
    PlainSerializer(format_amount, return_type=str, when_used="json"),
    WithJsonSchema(
        amount_schema(
            AMOUNT_PATTERN,
            {"minimum": 0, "maximum": float(MAX_AMOUNT)},
            f"An amount: a decimal string or a number, 0 to {MAX_AMOUNT}, at most two decimals.",
            "150.00",
        ),
        mode="validation",
    ),
    WithJsonSchema(
        {"type": "string", "pattern": AMOUNT_PATTERN, "examples": ["150.00"]},
        mode="serialization",
    ),
]


def _parse_positive(value: object) -> Decimal:
    amount = parse_amount(value)
    if amount <= 0:
        raise ValueError("must be greater than 0")
    return amount


POSITIVE_AMOUNT_PATTERN = "^(?!0+(\\.0{1,2})?$)\\d{1,12}(\\.\\d{1,2})?$"
PositiveAmount = Annotated[
    Decimal,
    PlainValidator(_parse_positive),
    PlainSerializer(format_amount, return_type=str, when_used="json"),
    WithJsonSchema(
        amount_schema(
            POSITIVE_AMOUNT_PATTERN,
            {"exclusiveMinimum": 0, "maximum": float(MAX_AMOUNT)},
            f"An amount greater than 0: a decimal string or a number, up to {MAX_AMOUNT}, at most two decimals.",
            "10.00",
        )
    ),
]
Percentage = Annotated[
    Decimal,
    PlainValidator(_parse_positive),
    WithJsonSchema(
        amount_schema(
            "^(100(\\.00?)?|(?!0+(\\.0{1,2})?$)\\d{1,2}(\\.\\d{1,2})?)$",
            {"exclusiveMinimum": 0, "maximum": 100},
            "A percentage: greater than 0, at most 100, at most two decimals.",
            "10",
        )
    ),
]
"""Only for the documented schema of a percentage coupon's discount_value (the domain checks it)."""

TIMESTAMP_SCHEMA = {
    "type": "string",
    "format": "date-time",
    "pattern": TIMESTAMP_PATTERN,
    "description": (
        f"RFC 3339; without an offset it is read as UTC. Stored and returned in UTC (Z), between "
        f"{format_timestamp(MIN_TIMESTAMP)} and {format_timestamp(MAX_TIMESTAMP)}."
    ),
    "examples": ["2027-01-31T23:59:59Z"],
}
Timestamp = Annotated[
    datetime,
    AfterValidator(to_utc),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
    WithJsonSchema(TIMESTAMP_SCHEMA, mode="validation"),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "examples": ["2027-01-31T23:59:59Z"]}, mode="serialization"
    ),
]
"""A timestamp in a request: normalised to UTC, within what PostgreSQL stores."""
UtcTimestamp = Annotated[
    datetime,
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2027-01-31T23:59:59Z"]}),
]
"""A timestamp in a response: always UTC with Z."""


def Int(minimum: int, maximum: int, example: int) -> Any:
    """An integer from ``minimum`` to ``maximum`` (a column's range): a JSON integer (``20`` or,
    as JSON Schema counts it, ``20.0``), not a boolean or a string."""
    schema = {"type": "integer", "minimum": minimum, "maximum": maximum, "examples": [example]}
    return Annotated[int, BeforeValidator(_json_integer), Ge(minimum), Le(maximum), WithJsonSchema(schema)]


def _json_integer(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    if isinstance(value, str):
        raise ValueError("must be an integer, not a string")
    return value


IDEMPOTENCY_KEY_PATTERN = "^[\\x20-\\x7e]{1,255}$"
IDEMPOTENCY_KEY_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": IDEMPOTENCY_KEY_PATTERN,
    "description": "1-255 printable ASCII characters; the same key with the same body replays the first response.",
    "examples": ["order-1001"],
}


def _check_idempotency_key(value: str) -> str:
    if not 1 <= len(value) <= 255:
        raise ValueError("must be 1-255 characters")
    if not all(" " <= c <= "~" for c in value):
        raise ValueError("must be printable ASCII characters only")
    return value


IdempotencyKey = Annotated[str, AfterValidator(_check_idempotency_key), WithJsonSchema(IDEMPOTENCY_KEY_SCHEMA)]
VALID_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)  # the same rule, for the apply route's fast path

CURSOR_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "pattern": "^[A-Za-z0-9_-]+$",
    "description": "The next_cursor of the previous page, as returned.",
}
Status = Literal["inactive", "scheduled", "time_expired", "count_expired", "active"]
DiscountType = Literal["percentage", "fixed", "free_shipping"]


def _id_value(value: object) -> object:
    """An id is text; a JSON integer (within what every JSON parser holds exactly) is taken as
    its decimal string."""
    if isinstance(value, bool):
        raise ValueError("must be text or an integer, not a boolean")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        if abs(value) > MAX_JSON_BIGINT:
            raise ValueError(f"an integer id must be within -{MAX_JSON_BIGINT} and {MAX_JSON_BIGINT}")
        return str(value)
    return value


ID_SCHEMA = {
    "anyOf": [
        {"type": "string", "minLength": 1, "maxLength": 100, "pattern": NO_NUL_PATTERN},
        {"type": "integer", "minimum": -MAX_JSON_BIGINT, "maximum": MAX_JSON_BIGINT},
    ],
    "description": "An id: text of 1-100 characters, or an integer (taken as its decimal string).",
    "examples": ["sku-123"],
}
Id = Annotated[
    str,
    BeforeValidator(_id_value),
    Field(min_length=1, max_length=100),
    AfterValidator(check_text),
    WithJsonSchema(ID_SCHEMA),
]
"""A product, variant, category or customer id: text, or an integer taken as its decimal string."""


def _blank_class() -> str:
    """BLANK_CHARACTERS as the body of a regular-expression character class (JSON Schema escapes)."""
    return "".join(f"\\u{ord(c):04x}" for c in sorted(BLANK_CHARACTERS))


CUSTOMER_ID_SCHEMA = {
    "anyOf": [
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 100,
            # No NUL, and at least one character that is not whitespace.
            "pattern": f"^[^\\u0000]*[^\\u0000{_blank_class()}][^\\u0000]*$",
        },
        {"type": "integer", "minimum": -MAX_JSON_BIGINT, "maximum": MAX_JSON_BIGINT},
    ],
    "description": "A stable id of the customer: text of 1-100 characters, not only whitespace, or an integer "
    "(taken as its decimal string).",
    "examples": ["cust-42"],
}
CustomerId = Annotated[
    str,
    BeforeValidator(_id_value),
    Field(min_length=1, max_length=100),
    AfterValidator(check_text),
    WithJsonSchema(CUSTOMER_ID_SCHEMA),
]
"""A customer id: an Id that is not blank (the ledger refuses a blank one, see check_customer_id)."""
MAX_SCOPE_IDS = 1_000
IdList = Annotated[list[Id], Field(max_length=MAX_SCOPE_IDS)]


def _coupon_terms_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The rules of each discount type, documented as one variant per type: a percentage is at
    most 100 and may be capped, a fixed amount is not capped, free shipping takes no value."""
    properties = schema["properties"]
    no_value = {"type": "null"}
    schema["oneOf"] = [
        {
            "properties": {"discount_type": {"const": "percentage"}, "discount_value": _json_schema_of(Percentage)},
            "required": ["discount_value"],
        },
        {
            "properties": {
                "discount_type": {"const": "fixed"},
                "discount_value": _json_schema_of(PositiveAmount),
                "max_discount_amount": no_value,
            },
            "required": ["discount_value"],
        },
        {
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


def _json_schema_of(annotation: Any) -> dict[str, Any]:
    from pydantic import TypeAdapter

    return TypeAdapter(annotation).json_schema()


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    public: bool = False
    is_active: bool = True

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
            discount_value=_discount_value(coupon.discount_type, coupon.discount_value),
            min_order_value=coupon.min_order_value,
            max_discount_amount=coupon.max_discount_amount,
            starts_at=coupon.starts_at,
            expires_at=coupon.expires_at,
            max_uses=coupon.max_uses,
            max_uses_per_customer=coupon.max_uses_per_customer,
            uses_count=coupon.uses_count,
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
            discount_value=_discount_value(row.discount_type, row.discount_value),
            min_order_value=row.min_order_value,
            max_discount_amount=row.max_discount_amount,
            starts_at=row.starts_at,
            expires_at=row.expiry_date,
            max_uses=row.max_uses,
            max_uses_per_customer=row.max_uses_per_customer,
            uses_count=row.uses_count,
            is_active=row.is_active,
            status=row.status,  # type: ignore[arg-type]
            scope=ScopePublic.of(row.scope),
            public=row.public,
            campaign_id=row.campaign_id,
            created_at=row.created_at,
        )


def _discount_value(discount_type: str, value: Decimal) -> Decimal | None:
    return None if discount_type == FREE_SHIPPING else value


class CouponPage(BaseModel):
    data: list[CouponPublic]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


def _not_null(schema: dict[str, Any], *names: str) -> None:
    """Document optional fields as absent or a value, not null: null is read as absent, but a
    body must send ``subtotal`` or ``items`` and null is neither."""
    for name in names:
        field = schema["properties"][name]
        variants = [v for v in field.pop("anyOf") if v != {"type": "null"}]
        (variant,) = variants
        field.pop("default", None)
        schema["properties"][name] = {**variant, **field}


def _order_schema(examples: list[dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
    def finish(schema: dict[str, Any]) -> None:
        _not_null(schema, "subtotal", "items")
        schema["anyOf"] = [{"required": ["subtotal"]}, {"required": ["items"]}]
        schema["properties"]["subtotal"]["description"] = (
            "The order's subtotal; with items it may be left out (it is their sum, and a different "
            "value is SUBTOTAL_MISMATCH). Send subtotal, items or both."
        )
        schema["examples"] = examples

    return finish


class ItemIn(Request):
    """A line of the order: quantity x unit_price of a product (its variant and category optional)."""

    product_id: Id
    variant_id: Id | None = None
    category_id: Id | None = None
    quantity: Int(1, 10_000, 2)  # type: ignore[valid-type]
    unit_price: Amount

    def as_item(self) -> Item:
        return Item(
            product_id=self.product_id,
            quantity=self.quantity,
            unit_price=self.unit_price,
            variant_id=self.variant_id,
            category_id=self.category_id,
        )


VALIDATE_EXAMPLES: list[dict[str, Any]] = [
    {"code": "SAVE10", "subtotal": "150.00"},
    {
        "code": "SAVE10",
        "items": [
            {"product_id": "sku-1", "category_id": "shoes", "quantity": 2, "unit_price": "40.00"},
            {"product_id": "sku-2", "variant_id": "sku-2-red", "quantity": 1, "unit_price": "70.00"},
        ],
        "shipping_amount": "4.90",
        "customer_id": "cust-42",
    },
]


class ValidateRequest(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_order_schema(VALIDATE_EXAMPLES))

    code: Code
    subtotal: Amount | None = None
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=100)] | None = None
    shipping_amount: Amount | None = Field(
        default=None, description="What shipping costs: a free_shipping coupon's discount (0 when absent)."
    )
    customer_id: CustomerId | None = Field(
        default=None, description="A stable id of the customer: required by a coupon with max_uses_per_customer."
    )

    def order_items(self) -> list[Item] | None:
        return [line.as_item() for line in self.items] if self.items is not None else None


class ApplyRequest(ValidateRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=_order_schema(
            [{**VALIDATE_EXAMPLES[0], "order_id": "1001"}, {**VALIDATE_EXAMPLES[1], "order_id": "1002"}]
        ),
    )

    order_id: text(1, 100, "1001") | None = None  # type: ignore[valid-type]


class ReserveRequest(ApplyRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=_order_schema(
            [{**VALIDATE_EXAMPLES[0], "ttl_seconds": 900}, {**VALIDATE_EXAMPLES[1], "order_id": "cart-77"}]
        ),
    )

    ttl_seconds: Int(1, MAX_HOLD_SECONDS, DEFAULT_HOLD_SECONDS) = Field(  # type: ignore[valid-type]
        default=DEFAULT_HOLD_SECONDS,
        description="How long the use is held: it counts against every limit until then (default 900, at most 86400).",
    )


class HoldPublic(BaseModel):
    reservation_id: UUID
    code: str
    original_subtotal: Amount
    discount_amount: Amount
    final_total: Amount
    free_shipping: bool
    expires_at: UtcTimestamp
    status: Literal["held"] = "held"

    @classmethod
    def from_hold(cls, hold: Hold) -> HoldPublic:
        quote = hold.quote
        return cls(
            reservation_id=hold.reservation_id,
            code=quote.code,
            original_subtotal=quote.original_subtotal,
            discount_amount=quote.discount_amount,
            final_total=quote.final_total,
            free_shipping=quote.free_shipping,
            expires_at=hold.expires_at,
        )


class ConfirmRequest(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"order_id": "1001"}]})

    order_id: text(1, 100, "1001") | None = Field(  # type: ignore[valid-type]
        default=None, description="The order the use goes to (default: the order_id sent with the hold, if any)."
    )


ReservationStatus = Literal["held", "confirmed", "released", "expired"]


class ReservationPublic(BaseModel):
    reservation_id: UUID
    code: str
    status: ReservationStatus = Field(
        description="held (counting against the limits until expires_at), confirmed, released or expired; "
        "a hold past expires_at is expired at once, even before the sweeper records it."
    )
    original_subtotal: Amount
    discount_amount: Amount
    final_total: Amount
    free_shipping: bool
    expires_at: UtcTimestamp
    customer_id: str | None
    order_id: str | None
    redemption_id: UUID | None = Field(description="The redemption it became, once confirmed.")
    created_at: UtcTimestamp
    ended_at: UtcTimestamp | None = Field(description="When it was confirmed, released or its expiry recorded.")

    @classmethod
    def from_reservation(cls, reservation: Reservation, now: datetime) -> ReservationPublic:
        return cls(
            reservation_id=reservation.id,
            code=reservation.code,
            status="expired" if reservation.is_past_ttl(now) else reservation.status,  # type: ignore[arg-type]
            original_subtotal=reservation.original_subtotal,
            discount_amount=reservation.discount_amount,
            final_total=reservation.final_total,
            free_shipping=reservation.free_shipping,
            expires_at=reservation.expires_at,
            customer_id=reservation.customer_id,
            order_id=reservation.order_id,
            redemption_id=reservation.redemption_id,
            created_at=reservation.created_on,
            ended_at=reservation.ended_at,
        )


class ReleasePublic(ReservationPublic):
    already_ended: bool = Field(description="True when an earlier request (or the sweeper) had already ended it.")


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
    public: bool | None = None
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
        {"properties": {"event": {"const": "extend_expiry_and_activate"}}, "required": ["expires_at"]},
        {"properties": {"event": {"enum": [e for e in TRANSITION_EVENTS if e != "extend_expiry_and_activate"]}}},
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


class ReverseRequest(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "order cancelled"}]})

    reason: text(1, 500, "order cancelled") | None = None  # type: ignore[valid-type]


class ReversalPublic(BaseModel):
    redemption_id: UUID
    code: str
    discount_amount: Amount
    reversed: Literal[True] = True
    reversed_at: UtcTimestamp
    reason: str | None
    already_reversed: bool = Field(description="True when an earlier request reversed it (its time and reason).")

    @classmethod
    def from_reversal(cls, reversal: Reversal) -> ReversalPublic:
        redemption = reversal.redemption
        assert redemption.reversed_at is not None
        return cls(
            redemption_id=redemption.id,
            code=redemption.code,
            discount_amount=redemption.discount_amount,
            reversed_at=redemption.reversed_at,
            reason=redemption.reversal_reason,
            already_reversed=reversal.already_reversed,
        )


class QuotePublic(BaseModel):
    valid: Literal[True] = True
    code: str
    original_subtotal: Amount
    discount_amount: Amount
    final_total: Amount
    free_shipping: bool

    @classmethod
    def from_quote(cls, quote: Quote) -> QuotePublic:
        return cls(
            code=quote.code,
            original_subtotal=quote.original_subtotal,
            discount_amount=quote.discount_amount,
            final_total=quote.final_total,
            free_shipping=quote.free_shipping,
        )


class RedemptionPublic(BaseModel):
    redemption_id: UUID
    code: str
    original_subtotal: Amount
    discount_amount: Amount
    final_total: Amount
    free_shipping: bool


class ConfirmedPublic(RedemptionPublic):
    reservation_id: UUID


def redemption_json(redemption_id: UUID, quote: Quote) -> bytes:
    """``RedemptionPublic(...).model_dump_json()``, byte for byte, without building the model: the
    busiest response, written from values the ledger made (a test holds the two equal)."""
    return (
        f'{{"redemption_id":"{redemption_id}","code":{json.dumps(quote.code)},'
        f'"original_subtotal":"{format_amount(quote.original_subtotal)}",'
        f'"discount_amount":"{format_amount(quote.discount_amount)}",'
        f'"final_total":"{format_amount(quote.final_total)}",'
        f'"free_shipping":{"true" if quote.free_shipping else "false"}}}'
    ).encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format_amount(value) if value == value.quantize(Decimal("0.01")) else str(value)
    if isinstance(value, datetime):
        return format_timestamp(value)
    return value


class EventPublic(BaseModel):
    version: int
    type: str
    occurred_at: UtcTimestamp
    data: dict[str, Any]

    @classmethod
    def from_event(cls, event: RecordedEvent) -> EventPublic:
        return cls(
            version=event.version,
            type=event.type,
            occurred_at=event.occurred_at,
            data={k: _jsonable(v) for k, v in event.data.items()},
        )


class EventPage(BaseModel):
    data: list[EventPublic]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


class ProductCreate(Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "Wool scarf", "price": "45.00", "stock": 20}]}
    )

    name: text(1, 200, "Wool scarf")  # type: ignore[valid-type]
    price: Amount
    stock: Int(0, MAX_INT32, 20)  # type: ignore[valid-type]


class ProductPublic(BaseModel):
    id: int
    name: str
    price: Amount
    stock: int


class CheckoutItem(Request):
    product_id: Int(1, MAX_JSON_BIGINT, 1)  # type: ignore[valid-type]
    quantity: Int(1, 10_000, 2)  # type: ignore[valid-type]


SESSION_ID_PATTERN = "^[A-Za-z0-9_-]{1,100}$"
SESSION_ID_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 100,
    "pattern": SESSION_ID_PATTERN,
    "description": "A checkout session's id: 1-100 of A-Z a-z 0-9 _ - (the client's, or one the server made).",
    "examples": ["cart-8f3a2c"],
}
SessionId = Annotated[
    str, Field(min_length=1, max_length=100, pattern=SESSION_ID_PATTERN), WithJsonSchema(SESSION_ID_SCHEMA)
]
Lines = Annotated[list[CheckoutItem], Field(min_length=1, max_length=100)]


def _checkout_schema(schema: dict[str, Any]) -> None:
    """Two forms: the cart itself (items, coupon_code optional) or a checkout session."""
    _not_null(schema, "items", "coupon_code", "session_id")
    schema["oneOf"] = [
        {"required": ["items"], "not": {"required": ["session_id"]}},
        {"required": ["session_id"], "not": {"anyOf": [{"required": ["items"]}, {"required": ["coupon_code"]}]}},
    ]
    schema["properties"]["session_id"]["description"] = (
        "Place the order from this checkout session (its items, its coupon hold, its stock holds);"
        " then send neither items nor coupon_code."
    )
    schema["examples"] = [
        {"user_id": 42, "items": [{"product_id": 1, "quantity": 2}], "coupon_code": "SAVE10"},
        {"user_id": 42, "session_id": "cart-8f3a2c"},
    ]


class CheckoutRequest(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_checkout_schema)

    user_id: Int(1, MAX_JSON_BIGINT, 42)  # type: ignore[valid-type]
    items: Lines | None = None
    coupon_code: Code | None = None
    session_id: SessionId | None = None

    def form_errors(self) -> list[dict[str, str]]:
        """What the two forms forbid (items or session_id, exactly one; coupon_code only with items)."""
        if self.session_id is None:
            if self.items is None:
                return [{"field": "items", "message": "is required (or session_id, to check out a session)"}]
            return []
        errors = []
        if self.items is not None:
            errors.append({"field": "items", "message": "must not be sent with session_id (the session's are used)"})
        if self.coupon_code is not None:
            errors.append(
                {"field": "coupon_code", "message": "must not be sent with session_id (the session's coupon is used)"}
            )
        return errors


# --- checkout sessions ----------------------------------------------------------------------------


class SessionSync(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"session_id": "cart-8f3a2c", "items": [{"product_id": 1, "quantity": 2}], "subtotal": "48.00"},
                {"items": [{"product_id": 1, "quantity": 1}]},
            ]
        },
    )

    session_id: SessionId | None = Field(
        default=None, description="The client's id for the cart; absent: the server makes one (see the response)."
    )
    items: Lines
    subtotal: Amount | None = Field(
        default=None,
        description="The subtotal the client shows; if sent, it must be the server's (else SUBTOTAL_MISMATCH).",
    )


class SessionCouponRequest(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"code": "SAVE10"}]})

    code: Code
    customer_id: Id | None = Field(
        default=None, description="A stable id of the shopper: required by a coupon with max_uses_per_customer."
    )


class HoldInventoryRequest(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"ttl_seconds": 600}]})

    ttl_seconds: Int(1, 86_400, 600) | None = Field(  # type: ignore[valid-type]
        default=None, description="How long to hold the stock; default and at most: until the session expires."
    )


class SessionLinePublic(BaseModel):
    product_id: int
    name: str
    quantity: int
    unit_price: Amount
    line_total: Amount


class SessionCouponPublic(BaseModel):
    code: str
    customer_id: str | None
    reservation_id: UUID = Field(description="The ledger's hold of one use, for the session's lifetime.")
    discount_amount: Amount
    free_shipping: bool


class HeldItemPublic(BaseModel):
    product_id: int
    quantity: int


class InventoryHoldPublic(BaseModel):
    expires_at: UtcTimestamp
    items: list[HeldItemPublic]


class RefusalPublic(BaseModel):
    code: str = Field(examples=["MIN_ORDER_NOT_MET"])
    message: str
    details: dict[str, Any]


class CouponRemovedPublic(BaseModel):
    code: str
    reason: RefusalPublic = Field(description="Why the coupon no longer applies: the error applying it would give.")


class CheckoutSessionPublic(BaseModel):
    session_id: str
    status: Literal["open", "expired", "completed"]
    items: list[SessionLinePublic]
    subtotal: Amount
    coupon: SessionCouponPublic | None
    discount_amount: Amount
    total: Amount
    inventory_hold: InventoryHoldPublic | None = Field(description="The stock held for the session, while live.")
    expires_at: UtcTimestamp = Field(description="The session, its coupon hold and its stock holds end then.")
    order_id: int | None = Field(description="The order placed from the session (status completed).")
    created_at: UtcTimestamp
    updated_at: UtcTimestamp


class CheckoutSessionSynced(CheckoutSessionPublic):
    coupon_removed: CouponRemovedPublic | None = Field(
        description="The coupon this sync dropped from the session because it no longer applies to the cart."
    )
    client_secret: str | None = Field(
        default=None,
        description=(
            "Only in the answer that created the session (shown once, stored hashed): a publishable-key caller"
            " sends it as X-Client-Secret on every later call on the session, else the session is NOT_FOUND."
            " A secret key needs none."
        ),
        examples=["cs_V1p0s6_secret_9Zx2kq4TtR0mYb1cQe7LwH5uJ3aSdF8g"],
    )


class OrderPublic(BaseModel):
    id: int
    user_id: int
    subtotal: Amount
    total: Amount
    created_at: UtcTimestamp


class OrderWithCouponPublic(OrderPublic):
    discount_amount: Amount
    coupon_code: str
    redemption_id: UUID


def _order_fields_only_required(schema: dict[str, Any]) -> None:
    schema["required"] = list(OrderPublic.model_fields)


class OrderCreated(OrderWithCouponPublic):
    """The documented 201 of a checkout: the seed's order; discount_amount, coupon_code and
    redemption_id are there exactly when the request had a coupon_code."""

    model_config = ConfigDict(json_schema_extra=_order_fields_only_required)


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


# --- campaigns ----------------------------------------------------------------------------------

MAX_PREFIX_LENGTH = 50 - GENERATED_LENGTH
PREFIX_SCHEMA = {
    "type": "string",
    "maxLength": 100,
    "pattern": f"^[\\t\\n\\v\\f\\r ]*[A-Za-z0-9_-]{{0,{MAX_PREFIX_LENGTH}}}[\\t\\n\\v\\f\\r ]*$",
    "description": f"What every code of the campaign starts with: 0-{MAX_PREFIX_LENGTH} of A-Z 0-9 _ - (any case; "
    "upper-cased; surrounding spaces are ignored). Six random characters follow it.",
    "examples": ["SPRING-"],
}


def _check_prefix(value: str) -> str:
    try:
        return normalize_prefix(value)
    except InvalidCoupon as error:
        raise ValueError(error.message) from None


CampaignPrefix = Annotated[str, Field(max_length=100), AfterValidator(_check_prefix), WithJsonSchema(PREFIX_SCHEMA)]


class CampaignCreate(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Spring newsletter",
                    "prefix": "SPRING-",
                    "count": 500,
                    "coupon": {"discount_type": "percentage", "discount_value": "15", "max_uses": 1},
                    "max_redemptions": 200,
                    "max_discount_total": "2500.00",
                }
            ]
        },
    )

    name: text(1, 200, "Spring newsletter")  # type: ignore[valid-type]
    prefix: CampaignPrefix
    count: Int(1, MAX_CAMPAIGN_CODES, 500)  # type: ignore[valid-type]
    coupon: CouponTerms = Field(description="The terms every code of the campaign gets: a coupon without code.")
    max_redemptions: Int(1, MAX_INT32, 200) | None = Field(  # type: ignore[valid-type]
        default=None, description="Redemptions of all the campaign's codes together, at most."
    )
    max_discount_total: PositiveAmount | None = Field(
        default=None, description="Discount given by all the campaign's codes together, at most."
    )


def in_template(error: InvalidCoupon) -> InvalidCoupon:
    """The domain's refusal of a campaign, naming a field of the template as ``coupon.<field>``
    (the template's terms are checked together by the ledger, as a coupon's are)."""
    for item in error.details.get("errors", []):
        if item["field"] in COUPON_FIELDS:
            item["field"] = f"coupon.{item['field']}"
    return error


class CampaignTemplatePublic(BaseModel):
    """The terms every code of a campaign was created with (as each coupon shows them)."""

    discount_type: DiscountType
    discount_value: Amount | None = Field(description="Null for free_shipping (its discount is the shipping).")
    min_order_value: Amount | None
    max_discount_amount: Amount | None
    starts_at: UtcTimestamp | None
    expires_at: UtcTimestamp | None
    max_uses: int | None
    max_uses_per_customer: int | None
    scope: ScopePublic | None
    public: bool
    is_active: bool

    @classmethod
    def of(cls, template: Mapping[str, Any]) -> CampaignTemplatePublic:
        return cls(
            **{
                **template,
                "discount_value": _discount_value(template["discount_type"], template["discount_value"]),
                "scope": ScopePublic.of(template["scope"]),
            }
        )


class CampaignPublic(BaseModel):
    id: UUID
    name: str
    prefix: str
    count: int = Field(description="The number of codes asked for.")
    generated: int = Field(description="The number of codes made (equal to count once the campaign is created).")
    coupon: CampaignTemplatePublic
    max_redemptions: int | None
    max_discount_total: Amount | None
    redemptions: int = Field(description="Redemptions of the campaign's codes, less those reversed.")
    discount_total: Amount = Field(description="Discount given by the campaign's codes, less that reversed.")
    created_at: UtcTimestamp

    @classmethod
    def from_campaign(cls, campaign: Campaign) -> CampaignPublic:
        return cls(
            id=campaign.id,
            name=campaign.name,
            prefix=campaign.prefix,
            count=campaign.count,
            generated=campaign.generated,
            coupon=CampaignTemplatePublic.of(campaign.template),
            max_redemptions=campaign.max_redemptions,
            max_discount_total=campaign.max_discount_total,
            redemptions=campaign.redemptions,
            discount_total=campaign.discount_total,
            created_at=campaign.created_on,
        )


# --- storefront ---------------------------------------------------------------------------------

STOREFRONT_VERIFY_EXAMPLES: list[dict[str, Any]] = [
    {"code": "BIENVENIDO20", "cart_subtotal": "150.00"},
    {
        "code": "LAMPS15",
        "items": [{"product_id": "lamp-1", "category_id": "lighting", "quantity": 2, "unit_price": "120.00"}],
        "customer_id": "cust-7",
        "shipping_amount": "4.90",
    },
]


def _storefront_verify_schema(schema: dict[str, Any]) -> None:
    _not_null(schema, "cart_subtotal", "items")
    schema["anyOf"] = [{"required": ["cart_subtotal"]}, {"required": ["items"]}]
    schema["description"] = (
        "Seed 004's verify: a code against a cart. The retailer is the key's (no tenant_id). Send "
        "cart_subtotal, items or both (with both, cart_subtotal must be the items' sum)."
    )
    schema["examples"] = STOREFRONT_VERIFY_EXAMPLES


class StorefrontVerifyRequest(Request):
    """POST /v1/storefront/coupons/verify."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_storefront_verify_schema)

    code: Code
    cart_subtotal: Amount | None = Field(
        default=None,
        description=(
            "The cart's subtotal (the seed's field); with items it may be left out (it is their sum, and "
            "a different value is SUBTOTAL_MISMATCH)."
        ),
    )
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="The cart's lines: a coupon scoped to some products or categories needs them."
    )
    customer_id: CustomerId | None = Field(
        default=None, description="A stable id of the shopper: required by a coupon with a per-customer limit."
    )
    shipping_amount: Amount | None = Field(
        default=None, description="What shipping costs: a free_shipping coupon's discount (0 when absent)."
    )
    tenant_id: SkipJsonSchema[Any] = None

    @field_validator("tenant_id")
    @classmethod
    def _no_tenant(cls, value: Any) -> Any:
        raise ValueError("is not taken here: the API key names the retailer (leave tenant_id out)")

    def order_items(self) -> list[Item] | None:
        return [line.as_item() for line in self.items] if self.items is not None else None


class StorefrontVerification(BaseModel):
    """A valid coupon's discount on the cart: the seed's fields (valid, discount_amount,
    coupon_type), then the totals."""

    valid: Literal[True] = True
    discount_amount: Amount
    coupon_type: DiscountType
    code: str = Field(description="The coupon's code as stored (trimmed, upper-cased).")
    original_subtotal: Amount
    final_total: Amount = Field(description="original_subtotal - discount_amount.")
    free_shipping: bool = Field(description="True for a free_shipping coupon: its discount is the shipping_amount.")

    @classmethod
    def of(cls, quote: Quote, coupon_type: str) -> StorefrontVerification:
        return cls(
            discount_amount=quote.discount_amount,
            coupon_type=coupon_type,  # type: ignore[arg-type]
            code=quote.code,
            original_subtotal=quote.original_subtotal,
            final_total=quote.final_total,
            free_shipping=quote.free_shipping,
        )


class StorefrontCoupon(BaseModel):
    """What a shopper may see of a public coupon: its terms, never its counts, limits or campaign."""

    code: str = Field(pattern=PATH_CODE_PATTERN, examples=["SAVE10"])
    discount_type: DiscountType
    discount_value: Amount | None = Field(description="Null for free_shipping (its discount is the shipping).")
    min_order_value: Amount | None
    max_discount_amount: Amount | None
    starts_at: UtcTimestamp | None
    expires_at: UtcTimestamp | None

    @classmethod
    def from_row(cls, row: CouponRow) -> StorefrontCoupon:
        return cls(
            code=row.code,
            discount_type=row.discount_type,  # type: ignore[arg-type]
            discount_value=_discount_value(row.discount_type, row.discount_value),
            min_order_value=row.min_order_value,
            max_discount_amount=row.max_discount_amount,
            starts_at=row.starts_at,
            expires_at=row.expiry_date,
        )


class StorefrontCouponPage(BaseModel):
    data: list[StorefrontCoupon]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")
