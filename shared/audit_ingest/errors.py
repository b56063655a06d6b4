"""The errors the library raises, one tree, mapped to HTTP status once, at the edge.

    AuditError                      base; carries a machine code and a message
    ├── RequestRejected             the client must change the request (4xx)
    │   ├── InvalidEvent            400: one or more field errors (FieldError list)
    │   ├── MalformedBody           400: not JSON, not a CloudEvent, wrong shape
    │   ├── PayloadTooLarge         413: body over the endpoint's limit
    │   ├── UnsupportedMediaType    415: content type not accepted
    │   └── NotFound / MethodNotAllowed  404 / 405
    ├── AuthError
    │   ├── Unauthenticated         401: key missing, malformed or unknown (or no gateway proof)
    │   └── Forbidden               403: key revoked, expired or lacking a scope
    ├── RateLimited                 429: the key's requests per minute are used up
    └── Unavailable                 503: a dependency could not answer; nothing was accepted
        ├── KeyStoreUnavailable     the key could not be resolved (never a 401 for that)
        └── SinkUnavailable         the broker did not acknowledge in time

`audit_ingest.http.problem` is the one place that turns these into responses.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason an event was refused: where (dotted path), what, and a stable code."""

    field: str
    message: str
    code: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": self.code}


class AuditError(Exception):
    """Base of every error the library raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RequestRejected(AuditError):
    """The request itself is wrong; retrying it unchanged cannot succeed."""


class InvalidEvent(RequestRejected):
    """The payload parsed but broke the event schema or a limit."""

    code = "invalid_event"

    def __init__(self, errors: list[FieldError]) -> None:
        fields = ", ".join(sorted({e.field for e in errors}))
        super().__init__(f"The event is invalid ({len(errors)} error(s): {fields}).")
        self.errors = errors


class MalformedBody(RequestRejected):
    code = "malformed_body"

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class PayloadTooLarge(RequestRejected):
    code = "payload_too_large"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"The request body exceeds the limit of {limit_bytes} bytes.")
        self.limit_bytes = limit_bytes


class UnsupportedMediaType(RequestRejected):
    code = "unsupported_media_type"

    def __init__(
        self, content_type: str, accepted: tuple[str, ...], *, header: str = "Content-Type"
    ) -> None:
        shown = content_type or "(none)"
        super().__init__(
            f"{header} {shown!r} is not accepted here; send one of: {', '.join(accepted)}."
        )
        self.accepted = accepted


class NotFound(RequestRejected):
    code = "not_found"


class MethodNotAllowed(RequestRejected):
    code = "method_not_allowed"

    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"Method {method} is not allowed here; use {', '.join(allowed)}.")
        self.allowed = allowed


class AuthError(AuditError):
    """The caller's identity or rights do not allow the request."""


class Unauthenticated(AuthError):
    code = "unauthenticated"


class Forbidden(AuthError):
    code = "forbidden"


class RateLimited(AuditError):
    """The key used its quota for the current window; `retry_after` is when it resets."""

    code = "rate_limited"

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(
            f"This API key is limited to {limit} requests per minute; retry in {retry_after} s."
        )
        self.retry_after = retry_after


class Unavailable(AuditError):
    """A dependency failed; nothing was accepted and the client should retry.

    How long to wait (`Retry-After`) is a deployment setting, applied at the edge.
    """

    code = "unavailable"


class KeyStoreUnavailable(Unavailable):
    code = "key_store_unavailable"


class SinkUnavailable(Unavailable):
    code = "sink_unavailable"
