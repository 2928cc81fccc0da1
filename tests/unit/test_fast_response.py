"""The apply route's shortcuts give exactly what the models they stand in for give."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from api.routes.coupons import IDEMPOTENCY_KEY
from api.schemas import VALID_IDEMPOTENCY_KEY, RedemptionPublic, redemption_json
from ledger.domain import Quote

amounts = st.decimals(min_value=0, max_value=Decimal("999999999999.99"), places=2)


@given(st.uuids(), st.from_regex(r"[A-Z0-9_-]{3,50}", fullmatch=True), amounts, amounts, amounts, st.booleans())
def test_the_redemption_json_is_the_models_byte_for_byte(
    redemption_id: UUID, code: str, subtotal: Decimal, discount: Decimal, total: Decimal, free_shipping: bool
) -> None:
    quote = Quote(code, subtotal, discount, total, free_shipping)
    model = RedemptionPublic(
        redemption_id=redemption_id,
        code=code,
        original_subtotal=subtotal,
        discount_amount=discount,
        final_total=total,
        free_shipping=free_shipping,
    )
    assert redemption_json(redemption_id, quote) == model.model_dump_json().encode()


@given(st.text(max_size=300))
def test_the_idempotency_key_pattern_accepts_exactly_what_the_validator_accepts(key: str) -> None:
    try:
        IDEMPOTENCY_KEY.validate_python(key)
        valid = True
    except ValidationError:
        valid = False
    assert bool(VALID_IDEMPOTENCY_KEY.fullmatch(key)) == valid
