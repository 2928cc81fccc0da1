"""Helpers for the end-to-end tests: an authenticated client and the error-shape checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

Sql = Callable[..., list[tuple[Any, ...]]]

PAST = "2000-01-01T00:00:00Z"


def future() -> str:
    return (datetime.now(UTC) + timedelta(days=365)).isoformat()


@dataclass
class Api:
    """A client that sends ``api_key`` (the retailer's secret key) on every call; ``publishable``
    is the same retailer calling with its publishable key (``pk_…``), as a storefront does."""

    client: TestClient
    retailer_id: UUID
    api_key: str
    publishable_key: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def publishable(self) -> Api:
        """The same retailer, calling with its publishable key."""
        assert self.publishable_key, "this Api was made without a publishable key"
        return Api(self.client, self.retailer_id, self.publishable_key, self.publishable_key)

    def request(
        self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        if json is not None:
            kwargs["json"] = json
        return self.client.request(method, path, headers=self._headers(headers), **kwargs)

    def delete(self, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return self.client.delete(path, headers=self._headers(headers), **kwargs)

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {**self.headers, **(extra or {})}

    def get(self, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, headers=self._headers(headers), **kwargs)

    def post(self, path: str, json: Any = None, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return self.client.post(path, json=json, headers=self._headers(headers), **kwargs)

    def create_coupon(self, code: str, **fields: Any) -> dict[str, Any]:
        body = {"code": code, "discount_type": "percentage", "discount_value": "10", **fields}
        response = self.post("/v1/coupons", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def coupon(self, code: str) -> dict[str, Any]:
        response = self.get(f"/v1/coupons/{code}")
        assert response.status_code == 200, response.text
        return response.json()

    def apply(self, code: str, subtotal: Any, key: str | None = None, **extra: Any) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key is not None else None
        return self.post("/v1/coupons/apply", json={"code": code, "subtotal": subtotal, **extra}, headers=headers)

    def events(self, code: str) -> list[dict[str, Any]]:
        response = self.get(f"/v1/coupons/{code}/events")
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def list_codes(self, **params: Any) -> list[str]:
        response = self.get("/v1/coupons", params=params)
        assert response.status_code == 200, response.text
        return [c["code"] for c in response.json()["data"]]

    def add_product(self, name: str, price: Any, stock: int) -> dict[str, Any]:
        response = self.post("/v1/products", json={"name": name, "price": price, "stock": stock})
        assert response.status_code == 201, response.text
        return response.json()

    def stock_of(self, product_id: int) -> int:
        response = self.get("/v1/products")
        assert response.status_code == 200, response.text
        (product,) = [p for p in response.json() if p["id"] == product_id]
        return int(product["stock"])


def assert_error(response: httpx.Response, status: int, code: str, *, header_matches: bool = True) -> dict[str, Any]:
    """Assert the one error shape; return its details."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["details"], dict), error
    assert isinstance(error["request_id"], str) and error["request_id"], error
    if header_matches:
        assert response.headers.get("x-request-id") == error["request_id"]
    return error["details"]


def assert_validation_failed(response: httpx.Response) -> set[str]:
    """Assert a 422 VALIDATION_FAILED with details.errors [{field, message}]; return the fields."""
    details = assert_error(response, 422, "VALIDATION_FAILED")
    errors = details["errors"]
    assert isinstance(errors, list) and errors, details
    for item in errors:
        assert set(item) == {"field", "message"}, item
        assert isinstance(item["field"], str) and item["field"], item
        assert isinstance(item["message"], str) and item["message"], item
    return {item["field"] for item in errors}


def new_retailer(app: FastAPI, client: TestClient, name: str) -> Api:
    """A client authenticated as a brand-new retailer of the running app (its name made unique)."""
    created = app.state.services.retailers.create(f"{name}-{uuid4().hex[:12]}")  # names are unique
    return Api(client, created.retailer_id, created.api_key, created.publishable_key)
