"""The server's protocol writes each response at once, and writes the bytes uvicorn writes.

uvicorn's own `HttpToolsProtocol` and `OneWriteHttpTools` are driven side by side over the same
request bytes and the same ASGI app (a transport that records its writes stands in for the
socket): every response must come out byte for byte the same, the connection must end the
same way, and a whole-body response must take one write where uvicorn takes two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from audit_ingest.http.one_write import OneWriteCycle, OneWriteHttpTools, Worker, _with_names
from audit_ingest.serve import WORKER_CLASS

pytestmark = pytest.mark.unit

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
App = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

GET = b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n"
CLOSE = b"\r\nconnection: close\r\n\r\n"
POST = b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nhello"


class Transport:
    """What the protocol is given as its socket: records writes, and when it was closed."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed_after: int | None = None

    def write(self, data: bytes) -> None:
        assert self.closed_after is None, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        if self.closed_after is None:
            self.closed_after = len(self.writes)

    def is_closing(self) -> bool:
        return self.closed_after is not None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _serve(
    protocol_class: type[HttpToolsProtocol], app: App, chunks: list[bytes]
) -> Transport:
    """Feed `chunks` to one connection of `protocol_class` serving `app`; its transport."""
    config = Config(app=app, http=protocol_class, lifespan="off", proxy_headers=False)
    protocol = protocol_class(config, ServerState(), {}, asyncio.get_running_loop())
    transport = Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    for chunk in chunks:
        protocol.data_received(chunk)
        for _ in range(20):  # let the app's task run to its next wait
            await asyncio.sleep(0)
    if protocol.timeout_keep_alive_task is not None:
        protocol.timeout_keep_alive_task.cancel()
    return transport


def _whole(status: int = 200, body: bytes = b'{"ok":true}') -> App:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def _streamed(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for part in (b"one", b"two", b"three"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _fails_after_head(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise RuntimeError("a defect after the head")


async def _reads_body(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    received = b""
    while True:
        message = await receive()
        received += message.get("body", b"")
        if not message.get("more_body"):
            break
    await _whole(201, received)(scope, receive, send)


# (name, app, request chunks, writes uvicorn makes, writes ours makes)
CASES: list[tuple[str, App, list[bytes], int, int]] = [
    ("a whole body", _whole(), [GET], 2, 1),
    ("an empty body", _whole(204, b""), [GET], 2, 1),
    ("a request body", _reads_body, [POST], 2, 1),
    ("HEAD: a head, no body", _whole(), [GET.replace(b"GET", b"HEAD")], 1, 1),
    (
        "connection: close",
        _whole(),
        [GET.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n")],
        2,
        1,
    ),
    ("HTTP/1.0", _whole(), [GET.replace(b"HTTP/1.1", b"HTTP/1.0")], 2, 1),
    ("two pipelined requests", _whole(), [GET + GET], 4, 2),
    ("a stream of three chunks", _streamed, [GET], 5, 4),
    ("a defect after the head", _fails_after_head, [GET], 1, 1),
    (
        "100-continue, then the body",
        _reads_body,
        [POST[: POST.index(b"\r\n\r\n")] + b"\r\nexpect: 100-continue\r\n\r\n", b"hello"],
        3,
        2,
    ),
]


@pytest.mark.parametrize(
    ("app", "chunks", "theirs", "ours"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_the_same_bytes_in_fewer_writes(
    app: App, chunks: list[bytes], theirs: int, ours: int
) -> None:
    stock = await _serve(HttpToolsProtocol, app, chunks)
    one = await _serve(OneWriteHttpTools, app, chunks)
    assert b"HTTP/1." in b"".join(stock.writes)  # the case produced a response at all
    assert b"".join(one.writes) == b"".join(stock.writes)
    assert (len(stock.writes), len(one.writes)) == (theirs, ours)
    # Closed (or not) alike, and never before the bytes written ahead of the close.
    assert (one.closed_after is None) == (stock.closed_after is None)
    if one.closed_after is not None:
        assert one.closed_after == len(one.writes)


async def test_a_whole_response_is_one_write_with_its_head_first() -> None:
    one = await _serve(OneWriteHttpTools, _whole(body=b'{"ok":true}'), [GET])
    (write,) = one.writes
    head, _, body = write.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 11" in head
    assert body == b'{"ok":true}'


def test_the_server_runs_this_protocol() -> None:
    # What `audit-ingest-serve` passes to gunicorn names the worker, and the worker the protocol.
    module, _, name = WORKER_CLASS.rpartition(".")
    assert (module, name) == (Worker.__module__, Worker.__name__)
    config = Config(app=_whole(), **Worker.CONFIG_KWARGS)
    config.load()
    assert config.http_protocol_class is OneWriteHttpTools


def test_cycles_are_made_as_one_write_cycles_by_uvicorns_own_code() -> None:
    # uvicorn's method, not a copy of it (an upgrade of uvicorn changes both alike), with its one
    # global name for the cycle class bound to ours. Made as another class and switched after
    # (`cycle.__class__ = ...`) measured 4-5 µs of user CPU a request dearer: every attribute
    # access then misses CPython's caches.
    ours = OneWriteHttpTools.on_headers_complete
    theirs = HttpToolsProtocol.on_headers_complete
    assert ours.__code__ is theirs.__code__
    assert "RequestResponseCycle" in theirs.__code__.co_names
    assert ours.__globals__["RequestResponseCycle"] is OneWriteCycle
    assert theirs.__globals__["RequestResponseCycle"] is RequestResponseCycle
    assert ours.__qualname__ == theirs.__qualname__


def test_a_method_with_a_closure_is_refused() -> None:
    class WithSuper(HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            super().on_headers_complete()

    with pytest.raises(TypeError, match="closure"):
        _with_names(WithSuper.on_headers_complete, RequestResponseCycle=OneWriteCycle)


async def test_every_cycle_the_protocol_makes_is_a_one_write_cycle() -> None:
    made: list[type] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await _whole()(scope, receive, send)

    config = Config(app=app, http=OneWriteHttpTools, lifespan="off", proxy_headers=False)
    protocol = OneWriteHttpTools(config, ServerState(), {}, asyncio.get_running_loop())
    protocol.connection_made(Transport())  # type: ignore[arg-type]
    for _ in range(3):
        protocol.data_received(GET)
        made.append(type(protocol.cycle))
        for _ in range(20):
            await asyncio.sleep(0)
    if protocol.timeout_keep_alive_task is not None:
        protocol.timeout_keep_alive_task.cancel()
    assert made == [OneWriteCycle] * 3
