"""Changing and retiring coupons over HTTP: PATCH, DELETE (archive), the platform's
state machine (/transitions, /activate with an expiry), and reversing a redemption."""

from __future__ import annotations

from datetime import datetime
from typing import Any, get_args
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from api.schemas import TransitionEvent
from ledger.domain import TRANSITIONS
from tests.support.http import PAST, Api, Sql, assert_error, assert_validation_failed, future


def patch(api: Api, code: str, body: Any) -> httpx.Response:
    return api.client.patch(f"/v1/coupons/{code}", json=body, headers=api.headers)


def delete(api: Api, code: str) -> httpx.Response:
    return api.client.delete(f"/v1/coupons/{code}", headers=api.headers)


def transition(api: Api, code: str, event: str, **body: Any) -> httpx.Response:
    return api.post(f"/v1/coupons/{code}/transitions", json={"event": event, **body})


def reverse(api: Api, redemption_id: str, body: Any = None, **kwargs: Any) -> httpx.Response:
    return api.post(f"/v1/redemptions/{redemption_id}/reverse", json=body, **kwargs)


def redeem(api: Api, code: str, **body: Any) -> dict[str, Any]:
    response = api.post("/v1/coupons/apply", json={"code": code, "subtotal": "100", **body})
    assert response.status_code == 201, response.text
    return response.json()


def same_instant(a: str | None, b: str) -> bool:
    return a is not None and datetime.fromisoformat(a) == datetime.fromisoformat(b)


# ---- PATCH ------------------------------------------------------------------------------------------


def test_patch_changes_only_the_fields_sent_as_one_updated_event(api: Api) -> None:
    created = api.create_coupon("PATCH1", min_order_value="20", max_uses=10)
    expires = future()
    response = patch(
        api,
        "PATCH1",
        {
            "max_uses": 50,
            "expires_at": expires,
            "max_uses_per_customer": 3,
            "max_discount_amount": "25",
            "scope": {"category_ids": ["shoes"]},
            "public": True,
        },
    )
    assert response.status_code == 200, response.text
    coupon = response.json()
    assert coupon == api.coupon("PATCH1")
    assert coupon["max_uses"] == 50 and coupon["max_uses_per_customer"] == 3
    assert same_instant(coupon["expires_at"], expires)
    assert coupon["max_discount_amount"] == "25.00"
    assert coupon["scope"]["category_ids"] == ["shoes"]
    assert coupon["public"] is True
    unchanged = {"id", "code", "discount_type", "discount_value", "min_order_value", "starts_at", "created_at"}
    assert {k: coupon[k] for k in unchanged} == {k: created[k] for k in unchanged}
    events = api.events("PATCH1")
    assert [e["type"] for e in events] == ["Coupon.Created", "Coupon.Updated"]
    assert set(events[1]["data"]["changes"]) == {
        "max_uses",
        "expires_at",
        "max_uses_per_customer",
        "max_discount_amount",
        "scope",
        "public",
    }
    assert [c["max_uses"] for c in api.get("/v1/coupons").json()["data"]] == [50]  # the read model too


def test_patch_with_null_removes_a_term_and_public_null_is_false(api: Api) -> None:
    api.create_coupon(
        "PATCH2", min_order_value="20", max_uses=5, starts_at=PAST, scope={"product_ids": ["a"]}, public=True
    )
    body = {"min_order_value": None, "max_uses": None, "starts_at": None, "scope": None, "public": None}
    coupon = patch(api, "PATCH2", body).json()
    assert {k: coupon[k] for k in body} == {**dict.fromkeys(body), "public": False}


def test_an_empty_patch_changes_nothing_and_records_nothing(api: Api) -> None:
    created = api.create_coupon("PATCH3", max_uses=5)
    for body in ({}, {"max_uses": 5}):
        response = patch(api, "PATCH3", body)
        assert response.status_code == 200, response.text
        assert response.json() == created
    assert [e["type"] for e in api.events("PATCH3")] == ["Coupon.Created"]


@pytest.mark.parametrize("field", ["discount_type", "discount_value", "code", "campaign_id"])
def test_an_immutable_field_is_field_immutable_naming_it_before_any_other_check(api: Api, field: str) -> None:
    created = api.create_coupon("PATCH4")
    value = {"discount_type": "fixed", "discount_value": "10", "code": "PATCH4", "campaign_id": None}[field]
    # Sent with its current value too, and alongside an invalid field and an unknown one.
    for body in ({field: value}, {"max_uses": "many", field: value, "colour": "red"}):
        details = assert_error(patch(api, "PATCH4", body), 422, "FIELD_IMMUTABLE")
        assert details == {"field": field}
    assert api.coupon("PATCH4") == created


def test_is_active_in_a_patch_points_to_the_state_machine_routes(api: Api) -> None:
    api.create_coupon("PATCH5")
    response = patch(api, "PATCH5", {"is_active": False, "max_uses": 0})
    assert assert_validation_failed(response) == {"is_active", "max_uses"}
    (message,) = [e["message"] for e in response.json()["error"]["details"]["errors"] if e["field"] == "is_active"]
    assert "/activate" in message and "/deactivate" in message and "/transitions" in message
    assert api.coupon("PATCH5")["is_active"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"max_uses": 0}, "max_uses"),
        ({"max_uses_per_customer": -1}, "max_uses_per_customer"),
        ({"min_order_value": "1.001"}, "min_order_value"),
        ({"max_discount_amount": "0"}, "max_discount_amount"),
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"scope": {"product_ids": [""]}}, "scope.product_ids.0"),
        ({"public": "maybe"}, "public"),
        ([], "body"),
    ],
)
def test_an_invalid_patch_is_a_validation_failure_and_changes_nothing(api: Api, body: Any, field: str) -> None:
    created = api.create_coupon("PATCH6")
    assert field in assert_validation_failed(patch(api, "PATCH6", body))
    assert api.coupon("PATCH6") == created


def test_a_patch_breaking_a_rule_between_terms_is_refused(api: Api) -> None:
    api.create_coupon("PATCH7", discount_type="fixed", discount_value="5", starts_at="2030-01-01T00:00:00Z")
    assert assert_validation_failed(patch(api, "PATCH7", {"expires_at": "2029-12-31T00:00:00Z"})) == {"expires_at"}
    assert assert_validation_failed(patch(api, "PATCH7", {"max_discount_amount": "2"})) == {"max_discount_amount"}
    assert [e["type"] for e in api.events("PATCH7")] == ["Coupon.Created"]


def test_lowering_max_uses_below_the_uses_made_makes_the_coupon_count_expired(api: Api) -> None:
    api.create_coupon("PATCH8", max_uses=10)
    for _ in range(3):
        redeem(api, "PATCH8")
    coupon = patch(api, "PATCH8", {"max_uses": 2}).json()
    assert (coupon["max_uses"], coupon["uses_count"], coupon["status"]) == (2, 3, "count_expired")
    assert api.list_codes(status="count_expired") == ["PATCH8"]
    response = api.post("/v1/coupons/apply", json={"code": "PATCH8", "subtotal": "100"})
    assert assert_error(response, 422, "USAGE_LIMIT_REACHED") == {"max_uses": 2}


def test_patching_an_unknown_coupon_is_not_found(api: Api) -> None:
    assert_error(patch(api, "NOSUCH", {"max_uses": 1}), 404, "COUPON_NOT_FOUND")


# ---- DELETE (archive) -------------------------------------------------------------------------------------


def test_delete_archives_the_coupon_gone_everywhere_but_its_history(api: Api) -> None:
    api.create_coupon("GONE1")
    redeem(api, "GONE1")
    response = delete(api, "gone1")
    assert response.status_code == 204, response.text
    assert response.content == b""
    product = api.add_product("Pen", "3.00", 5)
    after = [
        api.get("/v1/coupons/GONE1"),
        api.post("/v1/coupons/validate", json={"code": "GONE1", "subtotal": "10"}),
        api.post("/v1/coupons/apply", json={"code": "GONE1", "subtotal": "10"}),
        patch(api, "GONE1", {"max_uses": 3}),
        transition(api, "GONE1", "deactivate"),
        api.post("/v1/coupons/GONE1/activate"),
        api.post("/v1/coupons/GONE1/deactivate"),
        delete(api, "GONE1"),
        api.post(
            "/v1/checkout",
            json={"user_id": 1, "items": [{"product_id": product["id"], "quantity": 1}], "coupon_code": "GONE1"},
        ),
    ]
    for refused in after:
        assert_error(refused, 404, "COUPON_NOT_FOUND")
    assert api.stock_of(product["id"]) == 5
    assert api.list_codes() == []
    for status in ("active", "inactive"):
        assert api.list_codes(status=status) == []
    events = api.events("GONE1")  # the history is kept
    assert [e["type"] for e in events] == ["Coupon.Created", "Coupon.Redeemed", "Coupon.Archived"]
    taken = api.post("/v1/coupons", json={"code": "gone1", "discount_type": "fixed", "discount_value": "1"})
    assert assert_error(taken, 409, "COUPON_CODE_TAKEN") == {"code": "GONE1"}


def test_deleting_an_unknown_coupon_is_not_found(api: Api) -> None:
    assert_error(delete(api, "NOSUCH"), 404, "COUPON_NOT_FOUND")


def test_an_archived_coupons_redemption_can_still_be_reversed(api: Api) -> None:
    api.create_coupon("GONE2", max_uses=1)
    redemption = redeem(api, "GONE2")
    assert delete(api, "GONE2").status_code == 204
    response = reverse(api, redemption["redemption_id"])
    assert response.status_code == 200, response.text
    assert [e["type"] for e in api.events("GONE2")][-1] == "Coupon.RedemptionReversed"


# ---- the platform's state machine --------------------------------------------------------------------------


def make_coupon_in(api: Api, code: str, status: str) -> None:
    """A coupon in ``status``, reached the way a retailer would."""
    if status == "scheduled":
        api.create_coupon(code, starts_at=future())
    elif status == "time_expired":
        api.create_coupon(code, expires_at=PAST)
    elif status == "count_expired":
        api.create_coupon(code, max_uses=1)
        redeem(api, code)
    else:
        api.create_coupon(code, is_active=status == "active")
    assert api.coupon(code)["status"] == status


STATUSES = ("inactive", "scheduled", "time_expired", "count_expired", "active")
# Where each allowed event leads (the status is derived: a count_expired coupon stays so until
# its limit or its count changes; a scheduled one until starts_at).
ARROWS = {
    ("activate", "inactive"): "active",
    ("activate", "time_expired"): "active",  # with a new expires_at
    ("activate", "count_expired"): "count_expired",
    ("deactivate", "active"): "inactive",
    ("deactivate", "scheduled"): "inactive",
    ("extend_expiry_and_activate", "inactive"): "active",
    ("extend_expiry_and_activate", "active"): "active",
    ("extend_expiry_and_activate", "scheduled"): "scheduled",
    ("extend_expiry_and_activate", "time_expired"): "active",
    ("extend_expiry_and_activate", "count_expired"): "count_expired",
    ("reconcile_count_status", "inactive"): "inactive",
    ("reconcile_count_status", "active"): "active",
    ("reconcile_count_status", "scheduled"): "scheduled",
    ("reconcile_count_status", "count_expired"): "count_expired",
}


def test_the_arrows_listed_here_are_exactly_the_domains() -> None:
    assert set(ARROWS) == {(event, status) for event, sources in TRANSITIONS.items() for status in sources}
    assert set(get_args(TransitionEvent)) == set(TRANSITIONS)


@pytest.mark.parametrize(("event", "status"), ARROWS, ids=[f"{e} from {s}" for e, s in ARROWS])
def test_every_arrow_of_the_diagram_answers_with_the_coupon(api: Api, event: str, status: str) -> None:
    make_coupon_in(api, "ARROW1", status)
    expires = future()
    body = {"expires_at": expires} if event == "extend_expiry_and_activate" or status == "time_expired" else {}
    response = transition(api, "arrow1", event, **body)
    assert response.status_code == 200, response.text
    coupon = response.json()
    assert coupon["status"] == ARROWS[event, status]
    assert coupon == api.coupon("ARROW1")
    if body:
        assert same_instant(coupon["expires_at"], expires)


FORBIDDEN = [(event, status) for event in TRANSITIONS for status in STATUSES if status not in TRANSITIONS[event]]


@pytest.mark.parametrize(("event", "status"), FORBIDDEN, ids=[f"{e} from {s}" for e, s in FORBIDDEN])
def test_every_forbidden_pair_is_an_invalid_transition_naming_both(api: Api, event: str, status: str) -> None:
    make_coupon_in(api, "NOARROW1", status)
    before = api.coupon("NOARROW1")
    events_before = api.events("NOARROW1")
    body = {"expires_at": future()} if event == "extend_expiry_and_activate" else {}
    details = assert_error(transition(api, "NOARROW1", event, **body), 409, "INVALID_TRANSITION")
    allowed = sorted(e for e, sources in TRANSITIONS.items() if status in sources)
    assert details == {"event": event, "status": status, "allowed_events": allowed}
    assert api.coupon("NOARROW1") == before
    assert api.events("NOARROW1") == events_before


def test_reconcile_moves_an_inactive_coupon_whose_uses_reached_the_limit_to_count_expired(api: Api) -> None:
    api.create_coupon("RECONCILE1", max_uses=1)
    redeem(api, "RECONCILE1")
    api.post("/v1/coupons/RECONCILE1/deactivate")
    assert api.coupon("RECONCILE1")["status"] == "inactive"
    assert transition(api, "RECONCILE1", "reconcile_count_status").json()["status"] == "count_expired"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event": "expire_time"}, "event"),  # the diagram's automatic arrows are not events one sends
        ({"event": "ACTIVATE"}, "event"),
        ({}, "event"),
        ({"event": "extend_expiry_and_activate"}, "expires_at"),
        ({"event": "deactivate", "reason": "x"}, "reason"),
        ({"event": "activate", "expires_at": "someday"}, "expires_at"),
    ],
)
def test_an_invalid_transition_request_is_a_validation_failure(api: Api, body: dict[str, Any], field: str) -> None:
    api.create_coupon("BADEVENT", is_active=False)
    response = api.post("/v1/coupons/BADEVENT/transitions", json=body)
    assert field in assert_validation_failed(response)
    assert api.coupon("BADEVENT")["status"] == "inactive"


def test_activating_an_expired_coupon_needs_a_later_expiry(api: Api) -> None:
    api.create_coupon("EXPIRED1", expires_at=PAST)
    assert assert_validation_failed(transition(api, "EXPIRED1", "activate")) == {"expires_at"}
    assert assert_validation_failed(transition(api, "EXPIRED1", "activate", expires_at=PAST)) == {"expires_at"}
    coupon = transition(api, "EXPIRED1", "activate", expires_at=None).json()
    assert (coupon["status"], coupon["expires_at"]) == ("active", None)


def test_extend_expiry_with_null_removes_the_expiry(api: Api) -> None:
    api.create_coupon("EXTEND1", expires_at=PAST, is_active=False)
    coupon = transition(api, "EXTEND1", "extend_expiry_and_activate", expires_at=None).json()
    assert (coupon["status"], coupon["expires_at"]) == ("active", None)


def test_transitions_on_an_unknown_coupon_are_not_found(api: Api) -> None:
    assert_error(transition(api, "NOSUCH", "activate"), 404, "COUPON_NOT_FOUND")


# ---- /activate with an optional expiry ----------------------------------------------------------------------


def test_activate_without_a_body_behaves_as_before(api: Api) -> None:
    expires = future()
    api.create_coupon("ACT1", is_active=False, expires_at=expires)
    for _ in range(2):  # repeating is harmless
        response = api.post("/v1/coupons/ACT1/activate")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "active"
        assert same_instant(response.json()["expires_at"], expires)
    assert [e["type"] for e in api.events("ACT1")] == ["Coupon.Created", "Coupon.Activated"]


def test_activate_with_an_expiry_extends_it_and_activates(api: Api) -> None:
    api.create_coupon("ACT2", expires_at=PAST)
    api.post("/v1/coupons/ACT2/deactivate")
    expires = future()
    coupon = api.post("/v1/coupons/ACT2/activate", json={"expires_at": expires}).json()
    assert coupon["status"] == "active" and same_instant(coupon["expires_at"], expires)
    assert [e["type"] for e in api.events("ACT2")][-2:] == ["Coupon.Updated", "Coupon.Activated"]


def test_activate_with_a_null_expiry_removes_it_and_an_empty_body_keeps_it(api: Api) -> None:
    api.create_coupon("ACT3", expires_at=future())
    kept = api.post("/v1/coupons/ACT3/activate", json={})
    assert kept.json()["expires_at"] is not None
    removed = api.post("/v1/coupons/ACT3/activate", json={"expires_at": None})
    assert removed.json()["expires_at"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [({"expires_at": PAST}, "expires_at"), ({"expires_at": "later"}, "expires_at"), ({"until": "x"}, "until")],
)
def test_activate_with_an_invalid_body_is_a_validation_failure(api: Api, body: dict[str, Any], field: str) -> None:
    api.create_coupon("ACT4", is_active=False)
    assert field in assert_validation_failed(api.post("/v1/coupons/ACT4/activate", json=body))
    assert api.coupon("ACT4")["is_active"] is False


# ---- reversals ---------------------------------------------------------------------------------------------


REVERSAL_FIELDS = {"redemption_id", "code", "discount_amount", "reversed", "reversed_at", "reason", "already_reversed"}


def test_a_reversal_gives_the_use_back_once_and_a_second_says_so(api: Api) -> None:
    api.create_coupon("REV1", max_uses=1, discount_value="10")
    redemption = redeem(api, "REV1")
    assert api.coupon("REV1")["status"] == "count_expired"
    response = reverse(api, redemption["redemption_id"], {"reason": "order cancelled"})
    assert response.status_code == 200, response.text
    first = response.json()
    assert set(first) == REVERSAL_FIELDS
    assert {k: first[k] for k in REVERSAL_FIELDS - {"reversed_at"}} == {
        "redemption_id": redemption["redemption_id"],
        "code": "REV1",
        "discount_amount": "10.00",
        "reversed": True,
        "reason": "order cancelled",
        "already_reversed": False,
    }
    assert first["reversed_at"].endswith("Z")
    coupon = api.coupon("REV1")
    assert (coupon["uses_count"], coupon["status"]) == (0, "active")
    assert [c["uses_count"] for c in api.get("/v1/coupons").json()["data"]] == [0]  # the read model counts it back

    again = reverse(api, redemption["redemption_id"], {"reason": "clicked twice"})
    assert again.status_code == 200, again.text
    assert again.json() == {**first, "already_reversed": True}  # the first reversal's time and reason
    assert api.coupon("REV1")["uses_count"] == 0
    types = [e["type"] for e in api.events("REV1")]
    assert types == ["Coupon.Created", "Coupon.Redeemed", "Coupon.RedemptionReversed"]
    assert api.events("REV1")[-1]["data"]["reason"] == "order cancelled"
    redeem(api, "REV1")  # the use given back can be used again
    assert api.coupon("REV1")["uses_count"] == 1


@pytest.mark.parametrize("body", [None, {}, {"reason": None}], ids=["no body", "empty", "null reason"])
def test_a_reversal_needs_no_reason(api: Api, body: Any) -> None:
    api.create_coupon("REV2")
    redemption = redeem(api, "REV2")
    response = reverse(api, redemption["redemption_id"], body)
    assert response.status_code == 200, response.text
    assert response.json()["reason"] is None


def test_a_reversal_gives_the_customer_their_use_back(api: Api) -> None:
    api.create_coupon("REV3", max_uses_per_customer=1)
    redemption = redeem(api, "REV3", customer_id="heidi")
    refused = api.post("/v1/coupons/apply", json={"code": "REV3", "subtotal": "100", "customer_id": "heidi"})
    assert_error(refused, 422, "CUSTOMER_LIMIT_REACHED")
    assert reverse(api, redemption["redemption_id"]).status_code == 200
    redeem(api, "REV3", customer_id="heidi")


def test_a_checkout_redemption_can_be_reversed(api: Api) -> None:
    api.create_coupon("REV4", max_uses=1)
    product = api.add_product("Lamp", "20.00", 3)
    order = api.post(
        "/v1/checkout",
        json={"user_id": 3, "items": [{"product_id": product["id"], "quantity": 1}], "coupon_code": "REV4"},
    )
    assert order.status_code == 201, order.text
    response = reverse(api, order.json()["redemption_id"], {"reason": "returned"})
    assert response.status_code == 200, response.text
    assert api.coupon("REV4")["uses_count"] == 0


def test_a_replayed_apply_after_its_reversal_replays_and_counts_nothing(api: Api) -> None:
    api.create_coupon("REV5")
    headers = {"Idempotency-Key": "rev5-order"}
    first = api.post("/v1/coupons/apply", json={"code": "REV5", "subtotal": "50"}, headers=headers)
    assert reverse(api, first.json()["redemption_id"]).status_code == 200
    again = api.post("/v1/coupons/apply", json={"code": "REV5", "subtotal": "50"}, headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    assert api.coupon("REV5")["uses_count"] == 0


@pytest.mark.parametrize(
    "redemption_id",
    [str(uuid4()), "not-a-uuid", "12345", "00000000-0000-0000-0000-000000000000"],
    ids=["unknown", "text", "number", "nil"],
)
def test_an_unknown_redemption_is_not_found(api: Api, redemption_id: str) -> None:
    details = assert_error(reverse(api, redemption_id), 404, "REDEMPTION_NOT_FOUND")
    assert set(details) == {"redemption_id"}


def test_a_coupon_id_is_no_redemption(api: Api) -> None:
    coupon = api.create_coupon("REV6")
    assert_error(reverse(api, coupon["id"]), 404, "REDEMPTION_NOT_FOUND")


def test_another_retailers_redemption_is_not_found_and_not_reversed(api: Api, other_api: Api) -> None:
    api.create_coupon("REV7")
    redemption = redeem(api, "REV7")
    foreign = reverse(other_api, redemption["redemption_id"])
    missing = reverse(other_api, str(uuid4()))
    assert_error(foreign, 404, "REDEMPTION_NOT_FOUND")
    assert_error(missing, 404, "REDEMPTION_NOT_FOUND")
    assert api.coupon("REV7")["uses_count"] == 1
    assert reverse(api, redemption["redemption_id"]).json()["already_reversed"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [({"reason": ""}, "reason"), ({"reason": "x" * 501}, "reason"), ({"why": "x"}, "why"), ([1], "body")],
)
def test_an_invalid_reversal_body_is_a_validation_failure(api: Api, body: Any, field: str) -> None:
    api.create_coupon("REV8")
    redemption = redeem(api, "REV8")
    assert field in assert_validation_failed(reverse(api, redemption["redemption_id"], body))
    assert api.coupon("REV8")["uses_count"] == 1


def test_a_reason_of_500_characters_is_kept(api: Api, sql: Sql) -> None:
    api.create_coupon("REV9")
    redemption = redeem(api, "REV9")
    reason = "é" * 500
    assert reverse(api, redemption["redemption_id"], {"reason": reason}).json()["reason"] == reason


# ---- the document -----------------------------------------------------------------------------------------


def test_every_new_operation_documents_its_error_codes(app: FastAPI) -> None:
    document = app.openapi()
    paths = document["paths"]

    def codes(path: str, method: str, status: str) -> list[str]:
        return paths[path][method]["responses"][status]["x-error-codes"]

    assert set(codes("/v1/coupons/{code}", "patch", "422")) == {"FIELD_IMMUTABLE", "VALIDATION_FAILED"}
    assert codes("/v1/coupons/{code}", "patch", "404") == ["COUPON_NOT_FOUND"]
    assert codes("/v1/coupons/{code}", "delete", "404") == ["COUPON_NOT_FOUND"]
    assert "204" in paths["/v1/coupons/{code}"]["delete"]["responses"]
    assert codes("/v1/coupons/{code}/transitions", "post", "409") == ["INVALID_TRANSITION"]
    assert codes("/v1/redemptions/{redemption_id}/reverse", "post", "404") == ["REDEMPTION_NOT_FOUND"]
    new_codes = {
        "COUPON_NOT_STARTED",
        "CUSTOMER_LIMIT_REACHED",
        "CUSTOMER_ID_REQUIRED",
        "CAMPAIGN_BUDGET_EXHAUSTED",
        "COUPON_NOT_APPLICABLE",
        "SUBTOTAL_MISMATCH",
    }
    for path in ("/v1/coupons/validate", "/v1/coupons/apply"):
        assert new_codes <= set(codes(path, "post", "422"))
    apply_links = paths["/v1/coupons/apply"]["post"]["responses"]["201"]["links"]
    assert apply_links["ReverseRedemption"]["operationId"] == "reverse_redemption"
    create = document["components"]["schemas"]["CouponCreate"]
    free_shipping = next(v for v in create["oneOf"] if v["properties"]["discount_type"]["const"] == "free_shipping")
    assert free_shipping["properties"]["discount_value"] == {"type": "null"}
    assert any(e["discount_type"] == "free_shipping" for e in create["examples"])
    for name in ("CouponPatch", "TransitionRequest", "ActivateRequest", "ReverseRequest", "ApplyRequest"):
        assert document["components"]["schemas"][name]["examples"], name
