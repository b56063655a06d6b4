"""The audit event, as typed dataclasses mirroring the API's schema (docs/api.md).

Plain dicts with the same shape are accepted everywhere an `AuditEvent` is, and so are
pydantic v2 models (anything with `model_dump`). The server checks every rule; these types
only make the common shape easy to build and hard to misspell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, Union

UTC = timezone.utc  # noqa: UP017 - datetime.UTC is Python 3.11+, the SDK runs on 3.9


@dataclass(frozen=True)
class Actor:
    """Who did it: `id` is required (1-256 characters)."""

    id: str
    type: str | None = None
    email: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Action:
    """What they did, such as `user.created` (the server stores it lower-cased)."""

    name: str


@dataclass(frozen=True)
class Resource:
    """What they did it to: `type` and `id` are required."""

    type: str
    id: str
    name: str | None = None


@dataclass(frozen=True)
class Result:
    """Whether it worked: `success` is required when a result is sent."""

    success: bool
    code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class AuditEvent:
    """One audit event: who (`actor`) did what (`action`) to which `resource`, and the outcome.

    `action` may be given as a plain string. `timestamp` may be an aware `datetime` or RFC 3339
    text; when absent the client stamps the time the event was handed to it. Free-form data
    goes in `context` or `metadata` (the server refuses unknown top-level fields).
    `idempotency_key` is set by the client when absent.
    """

    actor: Actor
    action: Action | str
    resource: Resource
    timestamp: datetime | str | None = None
    result: Result | None = None
    context: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    tenant_id: str | None = None
    idempotency_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object the API expects (fields that are `None` are left out)."""
        action = Action(self.action) if isinstance(self.action, str) else self.action
        out: dict[str, Any] = {
            "actor": _fields(self.actor),
            "action": _fields(action),
            "resource": _fields(self.resource),
        }
        if self.timestamp is not None:
            out["timestamp"] = (
                format_timestamp(self.timestamp)
                if isinstance(self.timestamp, datetime)
                else self.timestamp
            )
        if self.result is not None:
            out["result"] = _fields(self.result)
        for name in ("context", "metadata"):
            value = getattr(self, name)
            if value is not None:
                out[name] = dict(value)
        for name in ("tenant_id", "idempotency_key"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


class SupportsModelDump(Protocol):
    """A pydantic v2 model (or anything with the same `model_dump`)."""

    def model_dump(self, *, mode: str, exclude_none: bool) -> dict[str, Any]: ...


# What `send`, `send_batch` and `enqueue` take: an `AuditEvent`, a mapping of the same shape,
# or a pydantic v2 model of it. (`Union`, not `|`: this line runs on Python 3.9.)
EventInput = Union[AuditEvent, Mapping[str, Any], SupportsModelDump]  # noqa: UP007


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, such as `2024-12-05T10:00:00.000Z`.

    A naive `datetime` is refused: its offset is unknown and the API requires one.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware, such as datetime.now(UTC)")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _fields(value: Actor | Action | Resource | Result) -> dict[str, Any]:
    return {name: item for name, item in vars(value).items() if item is not None}
