"""uvicorn's httptools protocol, sending each response in one write.

uvicorn writes a response's status line and headers when the app sends ``http.response.start``,
and its body when the app sends ``http.response.body``: two ``send`` calls on the socket for every
response, each a trip through the kernel's TCP stack (on loopback, the receiver's side too) while
holding the GIL. ``CoalescingTransport`` keeps what is written during one turn of the event loop
and sends it together at the end of the turn (``loop.call_soon``), so a response that the app
sends in one go (every JSON response: Starlette sends both messages without waiting in between)
goes out as one segment. A streamed response still goes out as it is written: a turn at a time,
or at once when a turn has kept ``KEEP_AT_MOST`` bytes (so what is kept stays small, and the real
transport's flow control still pauses a writer that outruns its client).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

KEEP_AT_MOST = 64 * 1024


class CoalescingTransport:
    """A transport that sends the writes of one event-loop turn with one ``write`` of the real
    transport. Everything else is the real transport's; closing or aborting sends what is kept
    first, as the real transport would have sent it already."""

    __slots__ = ("_kept", "_loop", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._kept: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._kept:
            self._loop.call_soon(self.flush)
        self._kept.append(bytes(data))
        self._size += len(data)
        if self._size >= KEEP_AT_MOST:
            self.flush()

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        kept = self._kept
        if not kept:
            return
        self._kept = []
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(kept[0] if len(kept) == 1 else b"".join(kept))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._kept = []
        self._size = 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (``http="httptools"``) over a ``CoalescingTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
