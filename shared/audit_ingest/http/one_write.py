"""The server's HTTP protocol: uvicorn's httptools protocol, each response in one socket write.

uvicorn writes a response's status line and headers when the app sends `http.response.start`,
and its body when the app sends `http.response.body`: two `transport.write` calls, and with
uvloop two `send` system calls, as the transport writes at once when nothing is queued. On
loopback (Knative's queue-proxy, APISIX, the bench) the sender's system call also delivers the
bytes to the receiver and wakes it, so the second write costs about as much as the first, and
the response's writes were the largest single item of a single event's profile
(docs/benchmarks.md). Here the head is held until the body's first write and goes out in the
same one; nothing else about the response changes (the same bytes, in the same order).

A response that sends its head and then waits before its first body chunk (a stream) sends
its head with that chunk; every response of the functions is a whole body. A response with no
body write (`HEAD`) writes its head when it completes.
"""

from __future__ import annotations

import asyncio
import types
from typing import Any, ClassVar, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn_worker import UvicornWorker


class _HeadHeld:
    """A cycle's transport from its response's head on: the head's write is kept, and goes out
    with the body's first write (or before a close, or alone by `flush` when the response
    completes with no body write).

    Only what `RequestResponseCycle` calls on its transport is here (`write`, `close`,
    `is_closing`).
    """

    __slots__ = ("head", "holding", "transport")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.head = b""
        self.holding = True  # while uvicorn writes the head

    def write(self, data: bytes) -> None:
        if self.holding:
            self.head += data
            return
        if self.head:
            data = self.head + data
            self.head = b""
        self.transport.write(data)

    def flush(self) -> None:
        if self.head:
            self.transport.write(self.head)
            self.head = b""

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        result: bool = self.transport.is_closing()
        return result


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's request-response cycle, its head written with its body."""

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            held = _HeadHeld(self.transport)
            # Duck-typed: the three methods the cycle calls on its transport.
            self.transport = cast(asyncio.Transport, held)
            try:
                await super().send(message)
            finally:
                held.holding = False
            return
        await super().send(message)
        if self.response_complete and isinstance(self.transport, _HeadHeld):
            self.transport.flush()  # no body was written (HEAD): the head alone


def _with_names(function: Any, **names: Any) -> Any:
    """The same function (code, defaults), its global names in `names` bound to other objects."""
    if function.__closure__ is not None:  # a closure (`super()`) would not survive the copy
        raise TypeError(f"{function.__qualname__} has a closure; cannot rebind its globals")
    rebound = types.FunctionType(
        function.__code__,
        {**function.__globals__, **names},
        function.__name__,
        function.__defaults__,
    )
    rebound.__qualname__ = function.__qualname__
    rebound.__kwdefaults__ = function.__kwdefaults__
    return rebound


class OneWriteHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, its cycles `OneWriteCycle`s.

    uvicorn makes each request's cycle in `on_headers_complete`, by the global name
    `RequestResponseCycle`; here that method is uvicorn's own code with the name bound to
    `OneWriteCycle`, so nothing of it is copied. Not by setting `cycle.__class__` after the
    fact: measured, an instance made as one class and run as another misses CPython's
    attribute caches on every access (+4-5 µs of user CPU a request, more than the saved
    system call; docs/benchmarks.md, round eleven).
    """

    on_headers_complete = _with_names(
        HttpToolsProtocol.on_headers_complete, RequestResponseCycle=OneWriteCycle
    )


# uvicorn-worker ships no type hints: its class is `Any` to mypy.
class Worker(UvicornWorker):  # type: ignore[misc]
    """The gunicorn worker `audit-ingest-serve` runs: uvicorn's, with `OneWriteHttpTools`."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **UvicornWorker.CONFIG_KWARGS,
        "http": f"{__name__}:OneWriteHttpTools",
    }
