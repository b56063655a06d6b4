"""Turning what the caller gives into the exact JSON that is sent, once.

An event is prepared when it is handed to the SDK: it gets its idempotency key (the caller's,
else a new UUIDv4), its timestamp (the caller's, else now), and is serialised. Every retry then
sends the same bytes, so the same key; and a caller who mutates its dict afterwards changes
nothing that was queued.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from audit_ingest_sdk._models import UTC, AuditEvent, EventInput, format_timestamp

MAX_BATCH_EVENTS = 1000
"""The server's default limit of events per batch."""


@dataclass(frozen=True)
class PreparedEvent:
    """One event, serialised: `body` is its JSON object, carrying `idempotency_key`."""

    body: bytes
    idempotency_key: str

    @property
    def payload(self) -> dict[str, Any]:
        """The JSON object as sent (a fresh copy)."""
        value: dict[str, Any] = json.loads(self.body)
        return value


def new_idempotency_key() -> str:
    """A fresh idempotency key (a random UUIDv4)."""
    return str(uuid.uuid4())


def prepare_event(
    event: EventInput, *, idempotency_key: str | None = None, stamp_time: bool = True
) -> PreparedEvent:
    """Serialise `event` with its idempotency key and (if `stamp_time`) a default timestamp.

    The key is `idempotency_key` if given, else the event's own `idempotency_key`, else new.
    """
    payload = to_payload(event)
    key = idempotency_key or payload.get("idempotency_key") or new_idempotency_key()
    if not isinstance(key, str):
        raise TypeError("idempotency_key must be a string")
    payload["idempotency_key"] = key
    if stamp_time and payload.get("timestamp") is None:
        payload["timestamp"] = format_timestamp(datetime.now(UTC))
    return PreparedEvent(body=encode_json(payload), idempotency_key=key)


def prepare_batch(events: Iterable[EventInput], *, stamp_time: bool = True) -> list[PreparedEvent]:
    """Prepare the events of one batch: 1 to `MAX_BATCH_EVENTS` (1000) of them."""
    prepared = [prepare_event(event, stamp_time=stamp_time) for event in events]
    if not 1 <= len(prepared) <= MAX_BATCH_EVENTS:
        raise ValueError(
            f"a batch holds 1 to {MAX_BATCH_EVENTS} events, not {len(prepared)}; "
            "use a batcher for any number"
        )
    return prepared


def to_payload(event: EventInput) -> dict[str, Any]:
    """A new dict of the event's JSON object, from an `AuditEvent`, a mapping or a model."""
    if isinstance(event, AuditEvent):
        return event.to_dict()
    if isinstance(event, Mapping):
        return dict(event)
    dump = getattr(event, "model_dump", None)
    if callable(dump):
        dumped = dump(mode="json", exclude_none=True)
        if isinstance(dumped, dict):
            return dumped
    raise TypeError(
        f"an event must be an AuditEvent, a mapping or a pydantic model, not {type(event)!r}"
    )


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities are refused (the API refuses them too)."""
    text = json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
    )
    return text.encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
