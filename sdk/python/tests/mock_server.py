"""A scripted stand-in for the ingestion API, served through httpx.MockTransport.

Requests are recorded (bodies un-gzipped). Answers come from `script` in order (a response, a
callable returning one, or an exception to raise); once it is empty, the server answers like
the real one: 202 for a single event, 202 with every event accepted for a batch.
"""

from __future__ import annotations

import gzip
import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import httpx

# (`Union`, not `|`: the SDK's tests also run on Python 3.9.)
Answer = Union[httpx.Response, Exception, Callable[[httpx.Request], httpx.Response]]  # noqa: UP007
MakeClient = Callable[..., Any]  # the conftest's make_client fixture
RECEIVED_AT = "2024-12-05T10:00:00.123Z"


@dataclass
class Seen:
    """One request as the server received it."""

    path: str
    headers: httpx.Headers
    raw: bytes  # as sent (maybe gzip)
    body: Any  # JSON, decoded after un-gzipping


class MockServer:
    def __init__(self) -> None:
        self.script: deque[Answer] = deque()
        self.seen: list[Seen] = []
        self.gate: threading.Event | None = None  # when set up, requests wait for it
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def answer(self, *answers: Answer) -> None:
        self.script.extend(answers)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.gate is not None:
            self.gate.wait(10)
        seen = Seen(
            request.url.path, request.headers, request.read(), json.loads(_content(request))
        )
        with self._lock:
            self.seen.append(seen)
            planned = self.script.popleft() if self.script else None
        if planned is None:
            return self.accept(request)
        if isinstance(planned, Exception):
            raise planned
        if isinstance(planned, httpx.Response):
            return planned
        return planned(request)

    def accept(
        self, request: httpx.Request, reject: Mapping[int, list[dict[str, str]]] | None = None
    ) -> httpx.Response:
        """The real server's 202 (batch: events at `reject` indices are rejected)."""
        reject = reject or {}
        body = json.loads(_content(request))
        if request.url.path == "/v1/events":
            return httpx.Response(
                202, json={"event_id": self.event_id(), "received_at": RECEIVED_AT}
            )
        items = []
        for index, _ in enumerate(body["events"]):
            if index in reject:
                items.append({"index": index, "status": "rejected", "errors": reject[index]})
            else:
                items.append({"index": index, "event_id": self.event_id(), "status": "accepted"})
        accepted = sum(item["status"] == "accepted" for item in items)
        return httpx.Response(
            202,
            json={
                "accepted": accepted,
                "rejected": len(items) - accepted,
                "received_at": RECEIVED_AT,
                "events": items,
            },
            headers={"x-request-id": "req-ok"},
        )

    def rejecting(
        self, reject: Mapping[int, list[dict[str, str]]]
    ) -> Callable[[httpx.Request], httpx.Response]:
        """An answer that accepts a batch except the events at `reject` indices."""
        return lambda request: self.accept(request, reject)

    def event_id(self) -> str:
        return f"0192d4e5-8a7c-7def-9012-{next(self._ids):012x}"

    # What was sent.
    def batches(self) -> list[list[dict[str, Any]]]:
        return [seen.body["events"] for seen in self.seen if seen.path == "/v1/events/batch"]

    def batch_keys(self) -> list[list[str]]:
        return [[event["idempotency_key"] for event in batch] for batch in self.batches()]


def problem(
    status: int,
    *,
    retry_after: str | None = None,
    errors: list[dict[str, str]] | None = None,
    request_id: str = "req-1",
) -> httpx.Response:
    """A problem+json answer like the server's."""
    body: dict[str, Any] = {
        "type": "urn:audit-ingest:problem:something",
        "title": "Something",
        "status": status,
        "detail": f"detail of {status}",
        "instance": "/v1/events",
        "request_id": request_id,
    }
    if errors is not None:
        body["errors"] = errors
    headers = {"content-type": "application/problem+json", "x-request-id": request_id}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


def make_event(index: int = 0, **overrides: Any) -> dict[str, Any]:
    """A valid event whose `context.marker` is `index`."""
    event: dict[str, Any] = {
        "actor": {"id": f"user-{index}", "type": "user"},
        "action": {"name": "user.created"},
        "resource": {"type": "user", "id": f"user-{index + 1000}"},
        "context": {"marker": index},
    }
    event.update(overrides)
    return event


def field_error(field: str, code: str = "required") -> dict[str, str]:
    return {"field": field, "message": f"{field} is wrong.", "code": code}


def _content(request: httpx.Request) -> bytes:
    raw = request.read()
    return gzip.decompress(raw) if request.headers.get("content-encoding") == "gzip" else raw
