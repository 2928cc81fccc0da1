"""A rebuild swaps fresh tables in under a running app: the app keeps answering (its pooled
connections' prepared statements are planned again on the new tables), lists are never empty or
half-built, and a redemption made during the rebuild is counted once."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI

from projections.rebuild import rebuild
from tests.support.http import Api

TEMPLATE = {"discount_type": "fixed", "discount_value": "5"}


def listing(api: Api) -> list[tuple[str, int]]:
    response = api.get("/v1/coupons", params={"limit": 100})
    assert response.status_code == 200, response.text
    return [(c["code"], c["uses_count"]) for c in response.json()["data"]]


def test_an_app_serves_whole_lists_and_counts_redemptions_once_across_a_rebuild(api: Api, app: FastAPI) -> None:
    codes = [f"SWAP{n}" for n in range(6)]
    for code in codes:
        api.create_coupon(code, **TEMPLATE)
    for code in codes[:3]:
        assert api.apply(code, "20.00").status_code == 201
    before = listing(api)
    for _ in range(10):  # past psycopg's prepare threshold on the pooled connections
        assert listing(api) == before
    services = app.state.services
    errors: list[BaseException] = []
    position: list[int] = []

    def run() -> None:
        try:
            position.append(rebuild(services.ledger, services.coupons_view, page_size=2))
        except BaseException as error:
            errors.append(error)

    rebuilding = threading.Thread(target=run)
    rebuilding.start()
    applied = 0
    seen: list[Any] = []
    while rebuilding.is_alive() or applied < 3:
        assert api.apply(codes[applied % 6], "20.00").status_code == 201
        applied += 1
        seen.append(listing(api))  # the app's reads: whole, with its own writes
        assert [code for code, _ in seen[-1]] == codes
        assert sum(uses for _, uses in seen[-1]) == 3 + applied
    rebuilding.join(60)
    assert not errors, errors
    assert position and position[0] > 0
    expected = {code: int(n < 3) + len(range(n, applied, 6)) for n, code in enumerate(codes)}
    assert dict(listing(api)) == expected
    assert [api.coupon(code)["uses_count"] for code in codes] == [expected[code] for code in codes]
