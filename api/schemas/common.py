"""The shared request types and helpers of every schema module.

Every value a request carries goes through one of these types, so that whatever is
accepted can be stored: text without NUL (and valid Unicode) within its length, integers within
their PostgreSQL column, timestamps PostgreSQL stores (normalised to UTC), amounts that fit
numeric(14,2), codes of the code alphabet. Each type documents in OpenAPI exactly what it admits.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
)

from ledger.domain import (
    BLANK_CHARACTERS,
    CODE_RULE,
    normalize_code,
)
from ledger.errors import InvalidCoupon
from ledger.money import MAX_AMOUNT, format_amount, parse_amount
from ledger.timestamps import MAX_TIMESTAMP, MIN_TIMESTAMP, format_timestamp, to_utc

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


def _json_boolean(value: object) -> object:
    if not isinstance(value, bool):
        raise ValueError("must be true or false (a JSON boolean)")
    return value


Boolean = Annotated[bool, BeforeValidator(_json_boolean)]
"""A JSON boolean: true or false, never 0, 1 or a string such as "yes"."""


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


def json_schema_of(annotation: Any) -> dict[str, Any]:
    from pydantic import TypeAdapter

    return TypeAdapter(annotation).json_schema()


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


def not_null(schema: dict[str, Any], *names: str) -> None:
    """Document optional fields as absent or a value, not null: null is read as absent, but a
    body must send ``subtotal`` or ``items`` and null is neither."""
    for name in names:
        field = schema["properties"][name]
        variants = [v for v in field.pop("anyOf") if v != {"type": "null"}]
        (variant,) = variants
        field.pop("default", None)
        schema["properties"][name] = {**variant, **field}
