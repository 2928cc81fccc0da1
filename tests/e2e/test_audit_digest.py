"""GET /v1/audit/digest, /v1/audit/public-key and /v1/coupons/{code}/proof: a retailer's signed
digest covers its streams only, stays the same at a position however the log grows after it, and
its errors are in the contract's shape."""

from __future__ import annotations

import hashlib

from tests.support.http import Api, assert_error, assert_validation_failed

EMPTY_ROOT = hashlib.sha256(b"").hexdigest()


def test_a_digest_at_a_position_is_the_same_however_the_log_grows_after_it(api: Api) -> None:
    api.create_coupon("DIG-1", max_uses=50)
    assert api.apply("DIG-1", "40").status_code == 201
    first = api.get("/v1/audit/digest").json()
    assert api.apply("DIG-1", "40").status_code == 201
    api.create_coupon("DIG-2")
    later = api.get("/v1/audit/digest").json()
    assert later["position"] > first["position"]
    assert (later["events"], later["streams"]) > (first["events"], first["streams"])
    again = api.get("/v1/audit/digest", params={"position": first["position"]}).json()
    assert {k: again[k] for k in ("position", "events", "streams", "root")} == {
        k: first[k] for k in ("position", "events", "streams", "root")
    }


def test_a_digest_covers_the_retailers_streams_only(api: Api, other_api: Api) -> None:
    api.create_coupon("DIG-MINE")
    assert api.apply("DIG-MINE", "40", key="dig-mine-1", customer_id="c-1").status_code == 201
    mine = api.get("/v1/audit/digest").json()
    # The coupon (created, redeemed), its redemption (recorded) and the customer's usage (started,
    # used): three streams, five events.
    assert (mine["streams"], mine["events"]) == (3, 5)
    theirs = other_api.get("/v1/audit/digest").json()
    assert (theirs["streams"], theirs["events"], theirs["root"]) == (0, 0, EMPTY_ROOT)
    assert theirs["retailer_id"] == str(other_api.retailer_id)
    assert_error(other_api.get("/v1/coupons/DIG-MINE/proof"), 404, "COUPON_NOT_FOUND")


def test_a_proof_before_the_coupon_existed_is_not_found_and_a_position_past_the_log_is_refused(api: Api) -> None:
    api.create_coupon("DIG-EARLY")
    early = api.get("/v1/audit/digest").json()["position"]
    api.create_coupon("DIG-LATE")
    assert_error(api.get("/v1/coupons/DIG-LATE/proof", params={"position": early}), 404, "COUPON_NOT_FOUND")
    assert api.get("/v1/coupons/DIG-EARLY/proof", params={"position": early}).status_code == 200
    head = api.get("/v1/audit/digest").json()["position"]
    for path in ("/v1/audit/digest", "/v1/coupons/DIG-EARLY/proof"):
        assert assert_validation_failed(api.get(path, params={"position": head + 1000})) == {"position"}
        assert assert_validation_failed(api.get(path, params={"position": 0})) == {"position"}
        assert assert_validation_failed(api.get(path, params={"position": "x"})) == {"position"}


def test_an_archived_coupon_still_has_a_proof(api: Api) -> None:
    api.create_coupon("DIG-GONE")
    assert api.delete("/v1/coupons/DIG-GONE").status_code in {200, 204}
    proof = api.get("/v1/coupons/DIG-GONE/proof")
    assert proof.status_code == 200, proof.text
    assert proof.json()["version"] == 2


def test_audit_routes_need_a_secret_key(api: Api) -> None:
    api.create_coupon("DIG-PK")
    for path in ("/v1/audit/digest", "/v1/audit/public-key", "/v1/coupons/DIG-PK/proof"):
        assert_error(api.publishable.get(path), 403, "FORBIDDEN")
        assert_error(api.client.get(path), 401, "UNAUTHENTICATED")


def test_the_public_key_is_the_same_for_every_retailer_and_call(api: Api, other_api: Api) -> None:
    key = api.get("/v1/audit/public-key").json()
    assert key == other_api.get("/v1/audit/public-key").json()
    assert key["pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert len(bytes.fromhex(key["public_key"])) == 32
