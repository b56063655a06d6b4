"""Errors to HTTP: the one place a status code is chosen (RFC 9457 problem details)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from audit_ingest.errors import (
    AuditError,
    Forbidden,
    InvalidEvent,
    MalformedBody,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)

PROBLEM_JSON = "application/problem+json"

_STATUS_AND_TITLE: tuple[tuple[type[AuditError], int, str], ...] = (
    (InvalidEvent, 400, "Invalid event"),
    (MalformedBody, 400, "Malformed request body"),
    (Unauthenticated, 401, "Missing or unknown API key"),
    (Forbidden, 403, "API key not allowed"),
    (NotFound, 404, "Not found"),
    (MethodNotAllowed, 405, "Method not allowed"),
    (PayloadTooLarge, 413, "Request body too large"),
    (RateLimited, 429, "Too many requests"),
    (UnsupportedMediaType, 415, "Unsupported media type"),
    (Unavailable, 503, "Service temporarily unavailable"),
)


def status_of(error: AuditError) -> tuple[int, str]:
    for kind, status, title in _STATUS_AND_TITLE:
        if isinstance(error, kind):
            return status, title
    return 500, "Internal error"


def problem_body(
    status: int,
    title: str,
    code: str,
    detail: str,
    *,
    instance: str,
    request_id: str,
    errors: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:audit-ingest:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "request_id": request_id,
    }
    if errors is not None:
        body["errors"] = errors
    return body


def json_bytes(body: object) -> bytes:
    """Compact JSON ending in a newline, for every JSON and problem+json body the functions
    write (so `curl` output does not run into the shell prompt)."""
    return orjson.dumps(body, option=orjson.OPT_APPEND_NEWLINE)


def problem_response(
    error: AuditError, *, instance: str, headers: dict[str, str], retry_after: int = 2
) -> Response:
    """Render `error` as `application/problem+json`, with the headers its status calls for."""
    status, title = status_of(error)
    errors: list[dict[str, str]] | None = None
    if isinstance(error, InvalidEvent):
        errors = [item.as_dict() for item in error.errors]
    elif isinstance(error, MalformedBody):
        errors = [{"field": error.field, "message": error.message, "code": error.code}]
    out = dict(headers)
    if isinstance(error, Unavailable):
        out["Retry-After"] = str(retry_after)
    if isinstance(error, RateLimited):
        out["Retry-After"] = str(error.retry_after)
    if isinstance(error, Unauthenticated):
        out["WWW-Authenticate"] = 'ApiKey header="X-API-Key"'
    if isinstance(error, MethodNotAllowed):
        out["Allow"] = ", ".join(error.allowed)
    body = problem_body(
        status,
        title,
        error.code,
        error.message,
        instance=instance,
        request_id=headers.get("X-Request-Id", ""),
        errors=errors,
    )
    return Response(json_bytes(body), status_code=status, headers=out, media_type=PROBLEM_JSON)


def internal_error_response(*, instance: str, headers: dict[str, str]) -> Response:
    """500 for a defect: no internals in the body, the request id to quote in a report."""
    body = problem_body(
        500,
        "Internal error",
        "internal_error",
        "An unexpected error occurred. Quote the request id when you report it.",
        instance=instance,
        request_id=headers.get("X-Request-Id", ""),
    )
    return Response(json_bytes(body), status_code=500, headers=headers, media_type=PROBLEM_JSON)
