"""The exceptions the SDK raises, and the one mapping from an HTTP error answer to them.

Every exception carries `status` (None when no answer came), `request_id` (the server's
`X-Request-Id`: quote it when reporting a problem), `problem` (the RFC 9457 problem document,
when the server sent one) and `attempts` (how many requests were made, retries included).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from audit_ingest_sdk._models import UTC
from audit_ingest_sdk._results import BatchResult, FieldError


class AuditIngestError(Exception):
    """Base of every error the SDK raises."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.problem: dict[str, Any] | None = dict(problem) if problem is not None else None
        self.attempts = 1

    def __str__(self) -> str:
        details = [f"status {self.status}"] if self.status is not None else []
        if self.request_id:
            details.append(f"request_id {self.request_id}")
        if self.attempts > 1:
            details.append(f"after {self.attempts} attempts")
        return f"{self.message} ({', '.join(details)})" if details else self.message


class APIStatusError(AuditIngestError):
    """The server answered with an error status; subclasses name the common ones."""

    status: int

    def __init__(
        self,
        message: str,
        *,
        status: int,
        request_id: str | None = None,
        problem: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id, problem=problem)
        self.retry_after = retry_after


class ValidationError(APIStatusError):
    """400: the event or body is invalid; `errors` says which field and why.

    From `send_batch`, a 400 means no event of the batch was valid, and `errors` name
    `events[i].field`. `batch_result` then holds the same reasons in the shape a 202 gives
    (a `BatchResult`, `accepted` 0, one rejected `BatchItem` per event with its own fields),
    so one loop over `rejected_items` serves both answers; it is None for a single event and
    when the body as a whole was refused (not JSON, no `events`, over 1000 events).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        request_id: str | None = None,
        problem: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message,
            status=status,
            request_id=request_id,
            problem=problem,
            retry_after=retry_after,
        )
        raw = (problem or {}).get("errors")
        self.errors: list[FieldError] = [
            FieldError.from_json(item) for item in (raw if isinstance(raw, list) else [])
        ]
        self.batch_result: BatchResult | None = None


class AuthenticationError(APIStatusError):
    """401: the API key is missing, malformed or unknown."""


class PermissionDeniedError(APIStatusError):
    """403: the API key is revoked, expired, or lacks the `events:write` scope."""


class PayloadTooLargeError(APIStatusError):
    """413: the body is over the endpoint's limit (64 KiB single, 5 MiB batch by default)."""


class UnsupportedMediaTypeError(APIStatusError):
    """415: the content type or encoding is not accepted (for example gzip on a server
    without support for it)."""


class RateLimitedError(APIStatusError):
    """429, still answered after every retry: `retry_after` is the server's last advice."""


class ServerError(APIStatusError):
    """5xx: the service failed; 502 and 504 are retried, 500 (a defect) is not."""


class ServiceUnavailableError(ServerError):
    """503, still answered after every retry: nothing was accepted, send again later."""


class TransportError(AuditIngestError):
    """No answer: connection refused or reset, timeout, protocol error.

    `retryable` tells whether the SDK retried it (connect errors, timeouts and resets are; an
    invalid URL is not). The httpx exception is the `__cause__`.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class QueueFullError(AuditIngestError):
    """A batcher's queue or a spool is full: at once with `overflow="raise"`, or after
    waiting `block_timeout` seconds for room with `overflow="block"` (the default) and with
    a spool. The event was not taken."""


class SpoolLockedError(AuditIngestError):
    """The spool file is held by another open client (in another process, or this one)."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
}

# httpx errors after which the same request may well succeed.
_RETRYABLE_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def error_from_response(response: httpx.Response) -> APIStatusError:
    """The exception for an error answer, with its problem document and request id."""
    problem = _problem(response)
    status = response.status_code
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIStatusError)
    detail = problem.get("detail") if problem else None
    title = problem.get("title") if problem else None
    message = str(detail or title or f"HTTP {status} {response.reason_phrase}".strip())
    return kind(
        message,
        status=status,
        request_id=response.headers.get("x-request-id") or _str(problem, "request_id"),
        problem=problem,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def error_from_transport(exc: httpx.TransportError) -> TransportError:
    """The SDK's exception for an httpx transport failure (chain it with `from exc`)."""
    retryable = isinstance(exc, _RETRYABLE_TRANSPORT)
    return TransportError(f"{type(exc).__name__}: {exc}".rstrip(": "), retryable=retryable)


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds to wait: delta-seconds or an HTTP date; None when unusable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _problem(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _str(problem: Mapping[str, Any] | None, key: str) -> str | None:
    value = (problem or {}).get(key)
    return value if isinstance(value, str) else None
