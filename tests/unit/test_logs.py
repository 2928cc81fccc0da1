"""Log lines: JSON (or console) through one handler, the stdlib's too, with the request id of the
request they belong to, and never an API key, a client secret or a bearer token."""

from __future__ import annotations

import io
import json
import logging
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars

import api.logs
from api.logs import access_logger, configure_logging, mask_code, mask_text
from api.settings import Settings


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """configure_logging on a StringIO; the process's logging as it was afterwards."""
    monkeypatch.setattr(api.logs, "_access", None)  # put back afterwards: later apps log as before
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hooks = (sys.excepthook, threading.excepthook)
    out = io.StringIO()
    try:
        yield out
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        sys.excepthook, threading.excepthook = hooks
        logging.captureWarnings(False)
        structlog.reset_defaults()
        clear_contextvars()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_stdlib_and_structlog_lines_are_json_with_the_request_id_bound_to_the_request(stream: io.StringIO) -> None:
    configure_logging(Settings(log_format="json"), stream)
    bind_contextvars(request_id="req-123")
    logging.getLogger("uvicorn.error").warning("started %d workers", 2)
    structlog.get_logger("coupon_ledger.access").info("request", status=201)
    access_logger("coupon_ledger.access").info("request", status=202, request_id="req-123")
    clear_contextvars()
    logging.getLogger("eventsourcing").warning("outside any request")
    first, second, access, third = lines(stream)
    assert first["event"] == "started 2 workers" and first["level"] == "warning" and first["logger"] == "uvicorn.error"
    assert first["request_id"] == "req-123" and second["request_id"] == "req-123"
    assert second["event"] == "request" and second["status"] == 201
    assert access == {**access, "event": "request", "status": 202, "level": "info", "logger": "coupon_ledger.access"}
    assert "request_id" not in third
    assert all(line["timestamp"].endswith("Z") for line in (first, second, access, third))


def test_an_exception_is_rendered_into_the_same_line(stream: io.StringIO) -> None:
    configure_logging(Settings(log_format="json"), stream)
    bind_contextvars(request_id="req-500")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("api.app").exception("unhandled error on %s %s", "GET", "/v1/coupons/{code}")
    (line,) = lines(stream)
    assert line["level"] == "error" and line["request_id"] == "req-500"
    assert "RuntimeError: boom" in line["exception"] and "Traceback" in line["exception"]


def test_keys_client_secrets_and_bearer_tokens_never_reach_a_line(stream: io.StringIO) -> None:
    configure_logging(Settings(log_format="json"), stream)
    secret_key = "cl_" + secrets.token_urlsafe(32)
    publishable = "pk_" + secrets.token_urlsafe(32)
    client_secret = "cs_abc_secret_" + secrets.token_urlsafe(24)
    log = logging.getLogger("anything")
    log.warning("key %s and %s", secret_key, publishable)
    log.warning("header Authorization: Bearer %s", secret_key)
    log.warning("session %s", client_secret)
    structlog.get_logger("x").info("nested", headers={"authorization": f"Bearer {secret_key}"}, keys=[publishable])
    text = stream.getvalue()
    for secret in (secret_key, publishable, client_secret, secret_key[3:], client_secret[-24:]):
        assert secret not in text
    assert "cl_***" in text and "pk_***" in text and "Bearer ***" in text and "_secret_***" in text
    assert len(lines(stream)) == 4


def test_warnings_and_uncaught_thread_errors_are_json_lines_too(stream: io.StringIO) -> None:
    configure_logging(Settings(log_format="json"), stream)
    import warnings

    warnings.warn("old thing", DeprecationWarning, stacklevel=1)

    def fail() -> None:
        raise ValueError("in a thread")

    thread = threading.Thread(target=fail, name="worker-x")
    thread.start()
    thread.join()
    found = lines(stream)
    assert any("old thing" in line["event"] for line in found)
    (crash,) = [line for line in found if "worker-x" in line["event"]]
    assert "ValueError: in a thread" in crash["exception"]


def test_console_format_is_for_people(stream: io.StringIO) -> None:
    configure_logging(Settings(log_format="console"), stream)
    logging.getLogger("x").warning("hello %s", "there")
    text = stream.getvalue()
    assert "hello there" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_without_a_format_json_unless_stderr_is_a_terminal(stream: io.StringIO) -> None:
    configure_logging(Settings(), stream)  # a StringIO is not a terminal
    logging.getLogger("x").warning("plain")
    assert lines(stream)[0]["event"] == "plain"


def test_the_level_setting_filters_every_logger(stream: io.StringIO) -> None:
    configure_logging(Settings(log_level="warning"), stream)
    logging.getLogger("uvicorn.error").info("not shown")
    access_logger("coupon_ledger.access").info("not shown either")
    logging.getLogger("uvicorn.error").error("shown")
    assert [line["event"] for line in lines(stream)] == ["shown"]


def test_masking_helpers() -> None:
    assert mask_code("SUMMER2026") == "SU…(10)"
    assert mask_text("nothing here") == "nothing here"
    assert mask_text("cl_" + "a" * 43) == "cl_***"
    assert mask_text("a_b c_d") == "a_b c_d"  # short words with underscores are not keys


class CountingStream(io.StringIO):
    """A stream that keeps each write apart, to see how lines are batched."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_access_lines_go_out_in_few_writes_of_whole_lines_in_order(stream: io.StringIO) -> None:
    counting = CountingStream()
    configure_logging(Settings(log_format="json"), counting)
    log = access_logger("coupon_ledger.access")
    for number in range(60):
        log.info("request", number=number, route="/v1/coupons/apply", padding="x" * 120)
    logging.getLogger("uvicorn.error").warning("after the sixtieth")  # the pending lines go out first
    for number in range(60, 65):
        log.info("request", number=number)
    api.logs.flush_logs()
    parsed = [json.loads(line) for line in counting.getvalue().splitlines()]
    assert [line.get("number") for line in parsed] == [*range(60), None, *range(60, 65)]
    assert parsed[60]["event"] == "after the sixtieth"
    access_writes = [text for text in counting.writes if '"number"' in text]
    assert len(access_writes) <= 10  # 65 lines of about 230 characters: a few batches (and the flusher's), not 65
    assert all(text.endswith("\n") and len(text.encode()) <= 4096 for text in access_writes)


def test_a_pending_access_line_is_written_without_a_flush_within_moments(stream: io.StringIO) -> None:
    configure_logging(Settings(log_format="json"), stream)
    access_logger("coupon_ledger.access").info("request", status=201)
    deadline = time.monotonic() + 5  # the flusher's turn comes every FLUSH_EVERY (0.2 s)
    while not stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    (line,) = lines(stream)
    assert line["status"] == 201


def test_values_json_cannot_take_from_orjson_still_make_a_json_line(stream: io.StringIO) -> None:
    configure_logging(Settings(log_format="json"), stream)
    structlog.get_logger("coupon_ledger").warning("odd values", big=2**70, text="caf\u00e9 \ud800")
    (line,) = lines(stream)
    assert line["event"] == "odd values" and line["big"] == 2**70 and line["text"] == "caf\u00e9 \ud800"
