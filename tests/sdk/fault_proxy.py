"""A fault-injecting reverse proxy in front of the two function processes.

A plain ASGI app served by uvicorn in a thread on a free loopback port. For the requests its
plan names (by arrival number, from 1) it answers 429 or 503 itself, with `Retry-After` and a
problem+json body, WITHOUT forwarding: the event never reaches the service, so a retry cannot
store it twice. Every other request is forwarded with httpx (`/v1/events/batch` to the batch
function, anything else to the single-event one) and the answer is passed back. Each exchange
is recorded so tests can check what the client sent, and when.

A fault with `lost_answer=True` is the other case: the request IS forwarded (and stored), and
the client gets the fault instead of the real answer, as when a 202 is lost on the way back.
Only the service's de-duplication of the retry keeps that event single.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PROBLEM_TYPES = {429: "rate_limited", 503: "sink_unavailable"}
# Not passed back: uvicorn sets its own framing headers, and httpx already decoded the body.
HOP_BY_HOP = {
    "connection",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "date",
    "server",
}


@dataclass(frozen=True)
class Fault:
    """Answer this status (429 or 503) with `Retry-After: retry_after` instead of forwarding
    (or, with `lost_answer`, instead of the forwarded request's real answer)."""

    status: int
    retry_after: int = 1
    lost_answer: bool = False


Plan = Callable[[int], "Fault | None"]


def faults_at(faults: Mapping[int, int], retry_after: int = 1, lost_answer: bool = False) -> Plan:
    """Fault the requests numbered in `faults` (number -> status); forward the rest."""

    def plan(number: int) -> Fault | None:
        return Fault(faults[number], retry_after, lost_answer) if number in faults else None

    return plan


def always(status: int, retry_after: int = 1) -> Plan:
    """Fault every request."""
    return lambda number: Fault(status, retry_after)


def never(number: int) -> Fault | None:
    """Forward every request."""
    return None


@dataclass(frozen=True)
class Exchange:
    """One request through the proxy and how it was answered."""

    number: int
    at: float  # time.monotonic() on arrival
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the client got
    faulted: bool
    upstream_status: int | None  # what the service answered, when forwarded

    def json(self) -> Any:
        return json.loads(self.body)


class FaultProxy:
    """The ASGI app. `plan` may be replaced between requests."""

    def __init__(self, single_url: str, batch_url: str, plan: Plan = never) -> None:
        self.single_url = single_url
        self.batch_url = batch_url
        self.plan = plan
        self.exchanges: list[Exchange] = []
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        arrived = time.monotonic()
        body = await _read_body(receive)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with self._lock:
            number = next(self._numbers)
            fault = self.plan(number)
        path = scope["path"]
        upstream_status = None
        if fault is None or fault.lost_answer:
            status, out_headers, out_body = await self._forward(path, headers, body)
            upstream_status = status
        if fault is not None:
            status, out_headers, out_body = _problem(fault, path)
        exchange = Exchange(
            number, arrived, path, headers, body, status, fault is not None, upstream_status
        )
        with self._lock:
            self.exchanges.append(exchange)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in out_headers],
            }
        )
        await send({"type": "http.response.body", "body": out_body})

    def faulted(self) -> list[Exchange]:
        return [exchange for exchange in self.exchanges if exchange.faulted]

    def forwarded(self) -> list[Exchange]:
        return [exchange for exchange in self.exchanges if not exchange.faulted]

    async def _forward(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = self.batch_url if path == "/v1/events/batch" else self.single_url
        sent = {k: v for k, v in headers.items() if k not in {"host", "content-length"}}
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(upstream + path, content=body, headers=sent)
        kept = [(k, v) for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP]
        return response.status_code, kept, response.content


@dataclass
class RunningProxy:
    url: str
    app: FaultProxy


@contextmanager
def running_proxy(app: FaultProxy) -> Iterator[RunningProxy]:
    """Serve `app` on a free loopback port for the duration of the block."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fault proxy did not start")
        time.sleep(0.01)
    try:
        yield RunningProxy(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _problem(fault: Fault, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
    request_id = f"proxy-{uuid.uuid4().hex[:12]}"
    code = PROBLEM_TYPES.get(fault.status, "injected")
    body = {
        "type": f"urn:audit-ingest:problem:{code}",
        "title": "Injected fault",
        "status": fault.status,
        "detail": f"The fault proxy answered {fault.status} without forwarding.",
        "instance": path,
        "request_id": request_id,
    }
    headers = [
        ("content-type", "application/problem+json"),
        ("retry-after", str(fault.retry_after)),
        ("x-request-id", request_id),
    ]
    return fault.status, headers, json.dumps(body).encode()
