"""The HTTP exchange without I/O: request bodies and headers, and reading the answers.

Both clients (sync and async) build the same requests here and read the same answers, so
their behaviour cannot drift apart.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from audit_ingest_sdk._config import ClientConfig
from audit_ingest_sdk._errors import AuditIngestError, error_from_response
from audit_ingest_sdk._prepare import PreparedEvent
from audit_ingest_sdk._results import Accepted

SINGLE_PATH = "/v1/events"
BATCH_PATH = "/v1/events/batch"
MAX_BATCH_BYTES = 5 * 1024 * 1024
"""The server's default limit of bytes per batch body."""

_BATCH_OPEN = b'{"events":['
_BATCH_CLOSE = b"]}"


@dataclass(frozen=True)
class Request:
    """One POST to make: the path, the (possibly compressed) body and its headers."""

    path: str
    content: bytes
    headers: dict[str, str]


def single_request(config: ClientConfig, event: PreparedEvent) -> Request:
    """POST /v1/events for one event, with its `Idempotency-Key` header."""
    headers = {"Idempotency-Key": event.idempotency_key}
    return _request(config, SINGLE_PATH, event.body, headers)


def batch_request(config: ClientConfig, events: Sequence[PreparedEvent]) -> Request:
    """POST /v1/events/batch; each event carries its own `idempotency_key`."""
    return _request(config, BATCH_PATH, batch_body(events), {})


def batch_body(events: Sequence[PreparedEvent]) -> bytes:
    """`{"events":[...]}` from the events' serialised bodies."""
    return _BATCH_OPEN + b",".join(event.body for event in events) + _BATCH_CLOSE


def batch_body_size(count: int, event_bytes: int) -> int:
    """The size of `batch_body` for `count` events whose bodies add up to `event_bytes`."""
    return len(_BATCH_OPEN) + event_bytes + max(count - 1, 0) + len(_BATCH_CLOSE)


def read_accepted(response: httpx.Response) -> Accepted:
    """The 202 of POST /v1/events, or the error the answer means (raised)."""
    body = read_success(response)
    event_id, received_at = body.get("event_id"), body.get("received_at")
    if not isinstance(event_id, str) or not isinstance(received_at, str):
        raise _unexpected(response, "a 2xx answer without event_id and received_at")
    return Accepted(event_id=event_id, received_at=received_at)


def read_success(response: httpx.Response) -> dict[str, object]:
    """The JSON object of a 2xx answer; raises the matching error for any other status."""
    if not response.is_success:
        raise error_from_response(response)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _unexpected(response, "a 2xx answer whose body is not a JSON object")
    return body


def _request(config: ClientConfig, path: str, content: bytes, extra: dict[str, str]) -> Request:
    headers = {**config.headers(), **extra}
    if config.gzip and len(content) > config.gzip_threshold:
        content = gzip.compress(content, compresslevel=6, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return Request(path=path, content=content, headers=headers)


def _unexpected(response: httpx.Response, what: str) -> AuditIngestError:
    return AuditIngestError(
        f"unexpected answer from the server: {what}",
        status=response.status_code,
        request_id=response.headers.get("x-request-id"),
    )
