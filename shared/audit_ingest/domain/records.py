"""Kafka records as values: built here, sent by an adapter.

The main topic's records follow the CloudEvents Kafka protocol binding in binary mode: headers
`ce_specversion`, `ce_id` (the event_id), `ce_source`, `ce_type`, `ce_time`, and
`content-type`. They are written directly (the binding is six fixed headers) rather than
through the SDK's `cloudevents.kafka.to_binary`, which costs about 15 µs a record, a batch of
1000 15 ms; a unit test holds the two to the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from audit_ingest.domain.envelope import CloudEventOrigin
from audit_ingest.domain.principal import Principal
from audit_ingest.errors import FieldError

EVENT_TYPE = "audit.event.v1"
CONTENT_TYPE = "application/json"
_EVENT_TYPE_BYTES = EVENT_TYPE.encode()
_CONTENT_TYPE_BYTES = CONTENT_TYPE.encode()


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def default_source(principal: Principal) -> str:
    """The CloudEvents `source` of an event that did not arrive as a CloudEvent."""
    return f"/tenants/{principal.tenant_id}/api-keys/{principal.api_key_id}"


def serialize(enriched: dict[str, Any]) -> bytes:
    """The record value: compact JSON (orjson: fast, and strict about what it can encode)."""
    return orjson.dumps(enriched)


def build_record(enriched: dict[str, Any], value: bytes, *, topic: str, source: str) -> KafkaRecord:
    """Wrap an enriched event (and its serialized value) as a binary-mode CloudEvent record.

    :param enriched: the enriched event (for its id, time and tenant).
    :param value: `serialize(enriched)`, computed once by the caller, who also checks its size.
    """
    # The order and encoding of `cloudevents.kafka.to_binary` (see the module's docstring).
    headers = (
        ("content-type", _CONTENT_TYPE_BYTES),
        ("ce_id", enriched["event_id"].encode()),
        ("ce_source", source.encode()),
        ("ce_type", _EVENT_TYPE_BYTES),
        ("ce_time", enriched["timestamp"].encode()),
        ("ce_specversion", b"1.0"),
    )
    return KafkaRecord(
        topic=topic, key=enriched["tenant_id"].encode(), value=value, headers=headers
    )


def build_dead_letter(
    original: bytes,
    *,
    topic: str,
    reason: str,
    errors: Sequence[FieldError],
    tenant_id: str,
    request_id: str,
    received_at: str,
    api_key_id: str = "",
    origin: CloudEventOrigin | None = None,
) -> KafkaRecord:
    """A dead-letter record: the event as sent, the why in headers.

    `original` is the request body for a plain JSON or binary-mode CloudEvent request, and the
    event re-encoded as JSON for a batch item or a structured CloudEvent's `data`. When the
    event came as a CloudEvent its attributes travel in `dlq_ce_*` headers, so a replay can
    restore them.
    """
    ce_headers: tuple[tuple[str, bytes], ...] = ()
    if origin is not None:
        ce_headers = tuple(
            (f"dlq_ce_{name}", value.encode())
            for name, value in (
                ("id", origin.id),
                ("source", origin.source),
                ("type", origin.type),
                ("time", origin.time),
                ("subject", origin.subject),
            )
            if value is not None
        )
    headers: tuple[tuple[str, bytes], ...] = (
        ("dlq_reason", reason.encode()),
        ("dlq_errors", orjson.dumps([error.as_dict() for error in errors])),
        ("dlq_tenant_id", tenant_id.encode()),
        ("dlq_api_key_id", api_key_id.encode()),
        ("dlq_request_id", request_id.encode()),
        ("dlq_received_at", received_at.encode()),
        ("content-type", CONTENT_TYPE.encode()),
        *ce_headers,
    )
    return KafkaRecord(topic=topic, key=tenant_id.encode(), value=original, headers=headers)
