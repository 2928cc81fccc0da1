"""The HTTP protocol `serve` runs: uvicorn's httptools protocol, each response sent in one write.

The transport's writes are counted on a transport that records each ``write`` it receives (what
the socket would ``send``); a real uvicorn server with the protocol answers keep-alive requests,
streamed responses larger than what a turn keeps, and malformed requests as uvicorn does."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from api.children import ServeConfig
from api.commands.serve import uvicorn_config
from api.http_protocol import KEEP_AT_MOST, CoalescingHttpToolsProtocol, CoalescingTransport


class RecordingTransport(asyncio.Transport):
    """Each write as the socket would send it, and whether the transport was closed or aborted."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        assert not self.closed, "written after close"
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8000) if name == "sockname" else default


def run(test: Any) -> None:
    asyncio.run(test())


def test_the_writes_of_one_turn_of_the_loop_reach_the_socket_as_one() -> None:
    async def test() -> None:
        real = RecordingTransport()
        transport = CoalescingTransport(real, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"{}")
        assert real.sent == []
        await asyncio.sleep(0)
        assert real.sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]

    run(test)


def test_writes_in_different_turns_go_out_separately_and_in_order() -> None:
    async def test() -> None:
        real = RecordingTransport()
        transport = CoalescingTransport(real, asyncio.get_running_loop())
        for chunk in (b"a", b"b", b"c"):
            transport.write(chunk)
            transport.write(b"")  # nothing to send: no empty segment
            await asyncio.sleep(0)
        assert real.sent == [b"a", b"b", b"c"]

    run(test)


def test_a_turn_that_keeps_enough_sends_at_once() -> None:
    async def test() -> None:
        real = RecordingTransport()
        transport = CoalescingTransport(real, asyncio.get_running_loop())
        transport.write(b"x" * (KEEP_AT_MOST - 1))
        assert transport.get_write_buffer_size() == KEEP_AT_MOST - 1
        transport.write(b"y")
        assert real.sent == [b"x" * (KEEP_AT_MOST - 1) + b"y"]  # before the turn ends
        assert transport.get_write_buffer_size() == 0
        transport.write(b"z")
        await asyncio.sleep(0)
        assert real.sent[1:] == [b"z"]

    run(test)


def test_closing_sends_what_was_kept_first_and_aborting_drops_it() -> None:
    async def test() -> None:
        loop = asyncio.get_running_loop()
        closed, aborted = RecordingTransport(), RecordingTransport()
        transport = CoalescingTransport(closed, loop)
        transport.write(b"last words")
        transport.close()
        assert closed.sent == [b"last words"] and closed.closed
        transport = CoalescingTransport(aborted, loop)
        transport.write(b"never sent")
        transport.abort()
        await asyncio.sleep(0)
        assert aborted.sent == [] and aborted.aborted

    run(test)


def test_the_rest_of_the_transport_is_the_real_one() -> None:
    async def test() -> None:
        real = RecordingTransport()
        transport = CoalescingTransport(real, asyncio.get_running_loop())
        assert transport.get_extra_info("sockname") == ("127.0.0.1", 8000)
        assert not transport.is_closing()
        real.close()
        assert transport.is_closing()

    run(test)


def test_serve_runs_the_coalescing_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ServeConfig, "configure_logging", lambda self: None)  # serve's logs stay unset
    args = type("Args", (), {"host": "127.0.0.1", "port": 0, "workers": 1, "graceful_timeout": 1})()
    assert uvicorn_config(args).http is CoalescingHttpToolsProtocol


def demo_app() -> FastAPI:
    app = FastAPI()

    @app.get("/small")
    def small(n: int) -> dict[str, int]:
        return {"n": n}

    @app.get("/stream")
    def stream(chunks: int, size: int) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:  # no await between chunks: one turn for all
            for i in range(chunks):
                yield bytes([65 + i % 26]) * size

        return StreamingResponse(body(), media_type="application/octet-stream")

    return app


@pytest.fixture
def server() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(demo_app(), http=CoalescingHttpToolsProtocol, log_config=None, access_log=False)
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if running.started:
                break
            threading.Event().wait(0.01)
        assert running.started
        yield f"http://127.0.0.1:{port}"
    finally:
        running.should_exit = True
        thread.join(10)
        sock.close()


def test_a_real_server_answers_keep_alive_requests_and_large_streams_whole(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as client:
        assert [client.get("/small", params={"n": n}).json() for n in range(20)] == [{"n": n} for n in range(20)]
        chunks, size = 40, 10_000  # 400 kB in one turn of the loop: sent as it is kept
        streamed = client.get("/stream", params={"chunks": chunks, "size": size})
        assert streamed.status_code == 200
        assert streamed.content == b"".join(bytes([65 + i % 26]) * size for i in range(chunks))
        assert client.get("/small", params={"n": 99}).json() == {"n": 99}  # the connection goes on


def test_a_real_server_answers_pipelined_and_malformed_requests_as_uvicorn_does(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"GET /small?n=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /small?n=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while received.count(b'{"n":') < 2:
            data = conn.recv(65536)
            assert data, received
            received += data
        assert received.index(b'{"n":1}') < received.index(b'{"n":2}')
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = b""
        while data := conn.recv(65536):  # the server closes after its 400
            answer += data
        assert answer.startswith(b"HTTP/1.1 400 ")
