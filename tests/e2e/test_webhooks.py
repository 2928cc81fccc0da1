"""Webhooks over HTTP, against a real receiving server: endpoints per retailer, deliveries made by
the webhooks projection from the event log and sent by the dispatcher, signed, in order per
coupon, retried until the receiver recovers, visible and re-sendable, and another retailer's 404."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from api.app import create_app
from api.settings import Settings
from projections.webhooks.signature import EVENT_ID_HEADER, SIGNATURE_HEADER, verify_signature
from tests.support.http import Api, assert_error, assert_validation_failed, new_retailer
from tests.support.postgres import wait_for


@pytest.fixture(scope="module")
def app(e2e_database_url: str) -> FastAPI:
    """The app with its projections and dispatcher in process, retrying after a tenth of a second."""
    return create_app(
        Settings(
            database_url=e2e_database_url,
            webhook_retry_base_seconds=0.1,
            webhook_retry_max_seconds=0.5,
            webhook_poll_seconds=0.05,
            webhook_timeout_seconds=2.0,
        )
    )


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


class Receiver:
    """What the receiving server got, in order; it answers 500 to the first ``failures`` requests.

    Each receiver listens on its own path: the server is shared by the session, and a delivery an
    earlier test made but had not yet sent must land nowhere rather than in a later test's receiver.
    """

    def __init__(self, server: HTTPServer, failures: int = 0) -> None:
        self.server = server
        self.path = f"/hook/{uuid.uuid4().hex}"
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answered = 0
        self.lock = threading.Lock()
        server.expect_request(self.path, method="POST").respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        with self.lock:
            self.answered += 1
            if self.answered <= self.failures:
                return Response("down for maintenance", status=500)
            self.received.append((dict(request.headers), request.get_data()))
        return Response("ok", status=200)

    @property
    def url(self) -> str:
        return self.server.url_for(self.path)

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver(httpserver: HTTPServer) -> Receiver:
    return Receiver(httpserver)


def create_endpoint(api: Api, url: str, events: list[str]) -> dict[str, Any]:
    response = api.post("/v1/webhooks/endpoints", json={"url": url, "events": events, "description": "test"})
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    return endpoint


def deliveries(api: Api, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/v1/webhooks/deliveries", params=params)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def exhaust(api: Api, code: str, uses: int) -> list[str]:
    api.create_coupon(code, max_uses=uses)
    ids = []
    for n in range(uses):
        response = api.apply(code, "100.00", key=f"{code}-{n}")
        assert response.status_code == 201, response.text
        ids.append(response.json()["redemption_id"])
    return ids


def test_an_exhausted_coupon_sends_its_redemptions_then_coupon_exhausted_in_order_and_signed(
    api: Api, receiver: Receiver
) -> None:
    endpoint = create_endpoint(api, receiver.url, ["redemption.created", "coupon.exhausted"])
    assert endpoint["secret"].startswith("whsec_")
    assert endpoint["events"] == ["redemption.created", "coupon.exhausted"]
    assert endpoint["disabled_at"] is None
    redemption_ids = exhaust(api, "HOOKED3", 3)
    api.post("/v1/coupons/HOOKED3/deactivate")  # a kind it did not ask for

    wait_for(lambda: len(receiver.received) >= 4, 20, message="four deliveries")
    time.sleep(0.5)  # nothing more comes
    bodies = receiver.bodies()
    assert [b["type"] for b in bodies] == ["redemption.created"] * 3 + ["coupon.exhausted"]
    assert [b["data"]["redemption_id"] for b in bodies] == [*redemption_ids, redemption_ids[-1]]
    assert all(b["data"]["code"] == "HOOKED3" for b in bodies)
    assert bodies[0]["data"]["discount_amount"] == "10.00" and bodies[0]["data"]["final_total"] == "90.00"
    positions = [b["data"]["position"] for b in bodies]
    assert positions == sorted(positions)
    assert bodies[3]["data"]["max_uses"] == bodies[3]["data"]["uses_count"] == 3
    for headers, body in receiver.received:
        assert verify_signature(endpoint["secret"], body, headers[SIGNATURE_HEADER])
        assert not verify_signature("whsec_wrong", body, headers[SIGNATURE_HEADER])
        assert headers[EVENT_ID_HEADER] == json.loads(body)["id"]

    listed = deliveries(api, endpoint_id=endpoint["id"])
    assert [d["status"] for d in listed] == ["succeeded"] * 4
    assert all(d["attempts"] == 1 and d["last_status_code"] == 200 for d in listed)


def test_a_receiver_that_fails_for_a_while_gets_every_delivery_in_order_once_it_recovers(
    api: Api, httpserver: HTTPServer
) -> None:
    receiver = Receiver(httpserver, failures=4)
    endpoint = create_endpoint(api, receiver.url, ["redemption.created", "coupon.exhausted", "redemption.reversed"])
    redemption_ids = exhaust(api, "FLAKY2", 2)
    assert api.post(f"/v1/redemptions/{redemption_ids[0]}/reverse").status_code == 200

    wait_for(lambda: len(receiver.received) >= 4, 30, message="four deliveries after the failures")
    assert [b["type"] for b in receiver.bodies()] == [
        "redemption.created",
        "redemption.created",
        "coupon.exhausted",
        "redemption.reversed",
    ]
    listed = wait_for(
        lambda: (d := deliveries(api, endpoint_id=endpoint["id"])) and all(x["status"] == "succeeded" for x in d) and d,
        10,
    )
    # The first redemption's delivery took the four 500s; the others waited behind it, then went once.
    first = next(d for d in listed if d["event_id"] == receiver.bodies()[0]["id"])
    assert first["attempts"] == 5 and first["last_status_code"] == 200
    assert sorted(d["attempts"] for d in listed) == [1, 1, 1, 5]
    assert deliveries(api, endpoint_id=endpoint["id"], status="pending") == []


def test_resend_delivers_again_with_the_same_event_id(api: Api, receiver: Receiver) -> None:
    endpoint = create_endpoint(api, receiver.url, ["coupon.created"])
    api.create_coupon("RESENT1")
    wait_for(lambda: receiver.received, 20, message="the first delivery")
    [delivery] = deliveries(api, endpoint_id=endpoint["id"])

    response = api.post(f"/v1/webhooks/deliveries/{delivery['id']}/resend")
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"
    wait_for(lambda: len(receiver.received) == 2, 20, message="the second delivery")
    first, second = receiver.received
    assert first[0][EVENT_ID_HEADER] == second[0][EVENT_ID_HEADER] == delivery["event_id"]
    assert first[1] == second[1]
    again = wait_for(
        lambda: (d := api.get(f"/v1/webhooks/deliveries/{delivery['id']}").json())["attempts"] == 2 and d, 10
    )
    assert again["status"] == "succeeded"


def test_another_retailer_sees_none_of_it(api: Api, other_api: Api, receiver: Receiver) -> None:
    endpoint = create_endpoint(api, receiver.url, ["coupon.created"])
    api.create_coupon("SECRETIVE")
    [delivery] = wait_for(lambda: deliveries(api, endpoint_id=endpoint["id"]), 20)

    for method, path in [
        ("GET", f"/v1/webhooks/endpoints/{endpoint['id']}"),
        ("DELETE", f"/v1/webhooks/endpoints/{endpoint['id']}"),
        ("GET", f"/v1/webhooks/deliveries/{delivery['id']}"),
        ("POST", f"/v1/webhooks/deliveries/{delivery['id']}/resend"),
    ]:
        foreign = other_api.client.request(method, path, headers=other_api.headers)
        missing = other_api.client.request(
            method,
            path.replace(endpoint["id"], "0" * 8 + endpoint["id"][8:]).replace(
                delivery["id"], "0" * 8 + delivery["id"][8:]
            ),
            headers=other_api.headers,
        )
        assert_error(foreign, 404, "NOT_FOUND")
        assert_error(missing, 404, "NOT_FOUND")
    assert other_api.get("/v1/webhooks/endpoints").json()["data"] == []
    assert deliveries(other_api) == []
    assert deliveries(other_api, endpoint_id=endpoint["id"]) == []
    assert api.get(f"/v1/webhooks/endpoints/{endpoint['id']}").json()["disabled_at"] is None


def test_a_deleted_endpoint_gets_nothing_more_and_stays_listed(api: Api, receiver: Receiver) -> None:
    endpoint = create_endpoint(api, receiver.url, ["coupon.created"])
    api.create_coupon("BEFORE1")
    wait_for(lambda: receiver.received, 20)
    deleted = api.delete(f"/v1/webhooks/endpoints/{endpoint['id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["disabled_at"] is not None
    assert api.delete(f"/v1/webhooks/endpoints/{endpoint['id']}").json() == deleted.json()
    api.create_coupon("AFTER1")
    time.sleep(1.0)
    assert [b["data"]["code"] for b in receiver.bodies()] == ["BEFORE1"]
    [delivery] = deliveries(api, endpoint_id=endpoint["id"])
    assert_error(api.post(f"/v1/webhooks/deliveries/{delivery['id']}/resend"), 409, "INVALID_TRANSITION")
    assert [e["id"] for e in api.get("/v1/webhooks/endpoints").json()["data"]] == [endpoint["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/hook", "events": ["coupon.created"]}, "url"),
        ({"url": "not a url", "events": ["coupon.created"]}, "url"),
        ({"url": "https://example.com/hook", "events": ["coupon.melted"]}, "events.0"),
        ({"url": "https://example.com/hook", "events": []}, "events"),
        ({"url": "https://example.com/hook", "events": ["coupon.created", "coupon.created"]}, "events"),
        ({"events": ["coupon.created"]}, "url"),
    ],
)
def test_a_bad_endpoint_is_422_naming_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    assert field in assert_validation_failed(api.post("/v1/webhooks/endpoints", json=body))


def test_webhooks_need_a_secret_key(api: Api) -> None:
    assert_error(api.publishable.get("/v1/webhooks/endpoints"), 403, "FORBIDDEN")
    assert_error(
        api.publishable.post("/v1/webhooks/endpoints", json={"url": "https://e.com/", "events": ["coupon.created"]}),
        403,
        "FORBIDDEN",
    )


def test_an_endpoint_gets_no_event_from_before_it_was_created(
    app: FastAPI, client: TestClient, receiver: Receiver
) -> None:
    api = new_retailer(app, client, "shop-late")
    api.create_coupon("EARLY1")
    create_endpoint(api, receiver.url, ["coupon.created"])
    api.create_coupon("LATE1")
    wait_for(lambda: receiver.received, 20)
    time.sleep(0.5)
    assert [b["data"]["code"] for b in receiver.bodies()] == ["LATE1"]


def test_deliveries_and_endpoints_are_paged_in_order(api: Api, receiver: Receiver) -> None:
    endpoint = create_endpoint(api, receiver.url, ["coupon.created"])
    second = create_endpoint(api, receiver.url, ["coupon.deactivated"])
    codes = [f"PAGED{n}" for n in range(5)]
    for code in codes:
        api.create_coupon(code)
    wait_for(lambda: len(deliveries(api, endpoint_id=endpoint["id"])) == 5, 20)
    seen, cursor = [], None
    while True:
        page = api.get(
            "/v1/webhooks/deliveries",
            params={"endpoint_id": endpoint["id"], "limit": 2, **({"cursor": cursor} if cursor else {})},
        ).json()
        seen.extend(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and len({d["id"] for d in seen}) == 5
    # Made is not yet sent: the five are made in one batch, and sending each takes its own moment.
    wait_for(lambda: {d["event_id"] for d in seen} <= {b["id"] for b in receiver.bodies()}, 20)
    by_event = {b["id"]: b["data"]["code"] for b in receiver.bodies()}
    assert [by_event[d["event_id"]] for d in seen] == codes  # log order
    first = api.get("/v1/webhooks/endpoints", params={"limit": 1}).json()
    rest = api.get("/v1/webhooks/endpoints", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [e["id"] for e in first["data"] + rest["data"]] == [endpoint["id"], second["id"]]
    assert rest["next_cursor"] is None
    for bad in ("bm90IGEgY3Vyc29y", first["next_cursor"]):  # not a cursor; an endpoint list's cursor
        assert "cursor" in assert_validation_failed(api.get("/v1/webhooks/deliveries", params={"cursor": bad}))
    assert "status" in assert_validation_failed(api.get("/v1/webhooks/deliveries", params={"status": "lost"}))
