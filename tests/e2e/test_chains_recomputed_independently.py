"""Anyone can check a history with no help from us: every chain, the digest's signature and a
coupon's proof are recomputed here from what the API serves, with the standard library (and
`cryptography` for Ed25519) only. This module imports nothing of the project."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ZEROS = "0" * 64


def served_events(api: Any, code: str) -> list[dict[str, Any]]:
    """Every event of a coupon, page by page (small pages, so paging is exercised)."""
    events: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        response = api.get(f"/v1/coupons/{code}/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return events


def check_chain(events: list[dict[str, Any]]) -> str:
    """The auditor's ten lines: each hash recomputed from the one before and what was served."""
    prev = ZEROS
    for event in events:
        body = {k: event[k] for k in ("version", "type", "occurred_at", "data")}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert event["prev_hash"] == prev, event
        prev = hashlib.sha256((prev + canonical).encode("utf-8")).hexdigest()
        assert event["hash"] == prev, event
    return prev


def make_history(api: Any) -> list[str]:
    """Coupons with every kind of event: redemptions (with customers), a reversal whose reason is
    not ASCII, holds confirmed and released, PATCH, deactivate/activate, a transition, an archive."""
    ok = {200, 201}
    api.create_coupon("CHAIN-PCT", discount_value="15", max_uses=20, max_uses_per_customer=5)
    api.create_coupon("CHAIN-FIX", discount_type="fixed", discount_value="7.5", min_order_value="20")
    assert api.post("/v1/coupons", json={"code": "CHAIN-OLD", "discount_type": "free_shipping"}).status_code == 201
    for n in range(4):
        response = api.apply("CHAIN-PCT", "80.00", key=f"chain-{n}", customer_id=f"kunde-{n % 2}", order_id=f"o{n}")
        assert response.status_code == 201, response.text
    first = api.apply("CHAIN-FIX", "40", order_id="ø-1").json()
    reversed_ = api.post(f"/v1/redemptions/{first['redemption_id']}/reverse", json={"reason": "storniert: café ✓ 注文"})
    assert reversed_.status_code in ok, reversed_.text
    held = api.post("/v1/coupons/reserve", json={"code": "CHAIN-PCT", "subtotal": "50", "customer_id": "kunde-9"})
    assert held.status_code == 201, held.text
    confirmed = api.post(f"/v1/reservations/{held.json()['reservation_id']}/confirm", json={"order_id": "o-held"})
    assert confirmed.status_code in ok, confirmed.text
    released = api.post("/v1/coupons/reserve", json={"code": "CHAIN-FIX", "subtotal": "30"}).json()
    assert api.post(f"/v1/reservations/{released['reservation_id']}/release").status_code in ok
    assert (
        api.request("PATCH", "/v1/coupons/CHAIN-PCT", json={"max_uses": 30, "min_order_value": "10"}).status_code == 200
    )
    assert api.post("/v1/coupons/CHAIN-FIX/deactivate").status_code == 200
    assert api.post("/v1/coupons/CHAIN-FIX/activate", json={"expires_at": "2099-01-01T00:00:00Z"}).status_code == 200
    assert api.post("/v1/coupons/CHAIN-OLD/transitions", json={"event": "deactivate"}).status_code == 200
    assert api.delete("/v1/coupons/CHAIN-OLD").status_code in {200, 204}
    return ["CHAIN-PCT", "CHAIN-FIX", "CHAIN-OLD"]


def test_every_coupons_chain_recomputes_from_what_was_served(api: Any) -> None:
    codes = make_history(api)
    kinds = set()
    for code in codes:
        events = served_events(api, code)
        assert [e["version"] for e in events] == list(range(1, len(events) + 1))
        kinds |= {e["type"] for e in events}
        check_chain(events)
    assert kinds >= {
        "Coupon.Created", "Coupon.Redeemed", "Coupon.RedemptionReversed", "Coupon.Reserved",
        "Coupon.ReservationReleased", "Coupon.Updated", "Coupon.Deactivated", "Coupon.Activated", "Coupon.Archived",
    }  # fmt: skip
    reversal = next(e for e in served_events(api, "CHAIN-FIX") if e["type"] == "Coupon.RedemptionReversed")
    assert reversal["data"]["reason"] == "storniert: café ✓ 注文"  # hashed as UTF-8, not as \\u escapes


def test_a_changed_byte_anywhere_in_a_served_history_breaks_its_chain(api: Any) -> None:
    api.create_coupon("CHAIN-EDIT", discount_type="fixed", discount_value="5")
    assert api.apply("CHAIN-EDIT", "30").status_code == 201
    events = served_events(api, "CHAIN-EDIT")
    check_chain(events)
    events[1]["data"]["discount_amount"] = "50.00"
    try:
        check_chain(events)
    except AssertionError:
        return
    raise AssertionError("a changed amount went unnoticed")


def merkle_root_from_path(index: int, size: int, leaf: bytes, path: list[str]) -> bytes:
    """RFC 9162 §2.1.3.2: the root a leaf and its inclusion path lead to."""
    fn, sn, digest = index, size - 1, leaf
    for sibling_hex in path:
        sibling = bytes.fromhex(sibling_hex)
        assert sn != 0
        if fn & 1 or fn == sn:
            digest = hashlib.sha256(b"\x01" + sibling + digest).digest()
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            digest = hashlib.sha256(b"\x01" + digest + sibling).digest()
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0
    return digest


def test_the_digest_is_signed_and_each_coupons_proof_leads_to_its_root(api: Any) -> None:
    codes = make_history(api)
    digest = api.get("/v1/audit/digest").json()
    assert set(digest) == {"retailer_id", "position", "events", "streams", "root", "issued_at", "key_id", "signature"}
    key = api.get("/v1/audit/public-key").json()
    assert key["algorithm"] == "Ed25519" and key["key_id"] == digest["key_id"]
    signed = json.dumps(
        {k: v for k, v in digest.items() if k != "signature"}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(key["public_key"])).verify(
        bytes.fromhex(digest["signature"]), signed
    )

    for code in codes:
        proof = api.get(f"/v1/coupons/{code}/proof", params={"position": digest["position"]}).json()
        head = served_events(api, code)[-1]
        assert (proof["version"], proof["head_hash"]) == (head["version"], head["hash"])
        leaf = hashlib.sha256(b"\x00" + bytes.fromhex(proof["stream"].replace("-", "")) + bytes.fromhex(head["hash"]))
        root = merkle_root_from_path(proof["leaf_index"], proof["tree_size"], leaf.digest(), proof["path"])
        assert root.hex() == proof["root"] == digest["root"]
        assert proof["tree_size"] == digest["streams"]
