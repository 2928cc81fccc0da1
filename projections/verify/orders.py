"""Orders placed with a coupon against the ledger: `POST /v1/checkout` with a coupon_code redeems
it, and an order placed from a checkout session confirms the session's hold; both write, in the
transaction that saves the redemption's events, the order and an `order_coupons` row naming the
redemption. So each `order_coupons` row must name a redemption of its retailer, recorded for that
order, that code and that discount, and its order's subtotal and total must be the redemption's
original_subtotal and final_total; a completed session with a coupon hold must have such a row
naming the redemption its hold became.

What was made at checkout is known from those rows alone, never from a redemption's idempotency
key: a client's own apply may use any key, `order:<n>` included.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ledger.domain import confirmed_redemption_id_for
from projections.coupons import CouponsView
from projections.verify.audit import Audit
from projections.verify.store import RECORDED

PAGE = 2000

ORDER_COUPONS = (
    "SELECT oc.order_id, oc.retailer_id, oc.coupon_code, oc.redemption_id, oc.discount_amount,"
    " o.retailer_id AS order_retailer_id, o.subtotal, o.total"
    " FROM order_coupons oc JOIN orders o ON o.id = oc.order_id"
    " WHERE oc.order_id > %s ORDER BY oc.order_id LIMIT %s"
)
COMPLETED_SESSIONS = (
    "SELECT s.retailer_id, s.id, s.order_id, s.reservation_id, oc.redemption_id"
    " FROM checkout_sessions s LEFT JOIN order_coupons oc ON oc.order_id = s.order_id"
    " WHERE s.status = 'completed' AND s.reservation_id IS NOT NULL AND (s.retailer_id, s.id) > (%s, %s)"
    " ORDER BY s.retailer_id, s.id LIMIT %s"
)


def rows(view: CouponsView, query: str, first: tuple[Any, ...], next_after: Any) -> Iterator[list[Any]]:
    """``query``'s rows a page at a time (keyset pagination, one autocommit statement each)."""
    after = first
    while True:
        with view.datastore.get_connection() as conn:
            page = conn.execute(query, (*after, PAGE)).fetchall()
        if page:
            yield page
        if len(page) < PAGE:
            return
        after = next_after(page[-1])


def check_orders(audit: Audit, view: CouponsView) -> None:
    for page in rows(view, ORDER_COUPONS, (-1,), lambda row: (row["order_id"],)):
        recorded = audit.store.first_events((row["redemption_id"] for row in page), RECORDED)
        for row in page:
            check_order(audit, row, recorded.get(row["redemption_id"]))
    sessions = rows(view, COMPLETED_SESSIONS, ("00000000-0000-0000-0000-000000000000", ""), session_key)
    for page in sessions:
        for row in page:
            became = confirmed_redemption_id_for(row["reservation_id"])
            if row["redemption_id"] != became:
                named = f"names redemption {row['redemption_id']}" if row["redemption_id"] else "has no coupon row"
                audit.violation(
                    f"checkout session {row['id']} of retailer {row['retailer_id']} placed order {row['order_id']}"
                    f" confirming hold {row['reservation_id']} (redemption {became}), but the order {named}"
                )


def session_key(row: Any) -> tuple[Any, ...]:
    return (row["retailer_id"], row["id"])


def check_order(audit: Audit, row: Any, recorded: Any) -> None:
    order = f"order {row['order_id']} of retailer {row['retailer_id']}"
    redemption_id = row["redemption_id"]
    if recorded is None:
        audit.violation(
            f"{order} used coupon {row['coupon_code']} as redemption {redemption_id}, which is not recorded"
        )
        return
    wanted = {
        "retailer": (row["retailer_id"], recorded.retailer_id),
        "order's retailer": (row["order_retailer_id"], recorded.retailer_id),
        "order_id": (str(row["order_id"]), recorded.order_id),
        "code": (row["coupon_code"], recorded.code),
        "discount_amount": (row["discount_amount"], recorded.discount_amount),
        "subtotal": (row["subtotal"], recorded.original_subtotal),
        "total": (row["total"], recorded.final_total),
    }
    differences = ", ".join(f"{name} {mine} != {theirs}" for name, (mine, theirs) in wanted.items() if mine != theirs)
    if differences:
        audit.violation(f"{order} disagrees with its redemption {redemption_id}: {differences}")
