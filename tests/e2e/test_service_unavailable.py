"""503 SERVICE_UNAVAILABLE with Retry-After: when retries run out, or the read model cannot catch up."""

import pytest
from eventsourcing.persistence import IntegrityError
from fastapi import FastAPI

import ledger.writer
from tests.support.http import Api, assert_error


def test_a_redemption_that_keeps_losing_version_races_is_503_and_counts_nothing(
    app: FastAPI, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.create_coupon("CONTENDED1", max_uses=5)
    services = app.state.services

    def always_conflict(*objs: object, **kwargs: object) -> None:
        raise IntegrityError("duplicate key value violates unique constraint")

    monkeypatch.setattr(services.ledger, "save", always_conflict)
    monkeypatch.setattr(ledger.writer.time, "sleep", lambda seconds: None)

    response = api.apply("CONTENDED1", "20.00")

    assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert response.headers["Retry-After"] == "1"
    monkeypatch.undo()
    assert api.coupon("CONTENDED1")["uses_count"] == 0


def test_a_list_the_read_model_cannot_bring_up_to_date_in_time_is_503(
    app: FastAPI, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.create_coupon("LAGGING1")
    services = app.state.services
    monkeypatch.setattr(services.settings, "read_wait_timeout", 0.05)
    monkeypatch.setattr(services.coupons_view, "has_tracking_id", lambda name, notification_id: False)

    response = api.get("/v1/coupons")

    assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert response.headers["Retry-After"] == "1"
