"""The dead-letter record format, written and read in one place.

A dead letter is the event's original bytes (the record value) with the why in headers:
`dlq_reason`, `dlq_errors` (a JSON list of field errors), `dlq_tenant_id`, `dlq_api_key_id`,
`dlq_request_id`, `dlq_received_at`, and, for an event that arrived as a CloudEvent, its
attributes as `dlq_ce_<name>` (so a replay can restore them). `build_dead_letter` writes
it; `parse_dead_letter` reads it back (tolerant of missing or damaged headers); a unit test
holds the two to a round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from audit_ingest.domain.envelope import CloudEventOrigin
from audit_ingest.domain.records import CONTENT_TYPE, KafkaRecord
from audit_ingest.domain.timestamps import parse_rfc3339
from audit_ingest.errors import FieldError

REASON = "dlq_reason"
ERRORS = "dlq_errors"
TENANT_ID = "dlq_tenant_id"
API_KEY_ID = "dlq_api_key_id"
REQUEST_ID = "dlq_request_id"
RECEIVED_AT = "dlq_received_at"
CLOUDEVENT_PREFIX = "dlq_ce_"


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
            (f"{CLOUDEVENT_PREFIX}{name}", value.encode())
            for name, value in origin.attributes().items()
        )
    headers: tuple[tuple[str, bytes], ...] = (
        (REASON, reason.encode()),
        (ERRORS, orjson.dumps([error.as_dict() for error in errors])),
        (TENANT_ID, tenant_id.encode()),
        (API_KEY_ID, api_key_id.encode()),
        (REQUEST_ID, request_id.encode()),
        (RECEIVED_AT, received_at.encode()),
        ("content-type", CONTENT_TYPE.encode()),
        *ce_headers,
    )
    return KafkaRecord(topic=topic, key=tenant_id.encode(), value=original, headers=headers)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    reason: str
    errors: tuple[dict[str, str], ...]
    tenant_id: str
    api_key_id: str
    request_id: str
    received_at: str
    value: bytes
    # The CloudEvent attributes the event arrived with (dlq_ce_* headers), when it did.
    cloudevent: dict[str, str] = field(default_factory=dict)

    @property
    def position(self) -> str:
        return f"{self.partition}@{self.offset}"

    @property
    def first_error(self) -> str:
        """`field/code` of the first recorded error (`-` when none was recorded)."""
        if not self.errors:
            return "-"
        first = self.errors[0]
        where = first.get("field") or "(event)"
        return f"{where}/{first.get('code') or '?'}"

    def received(self) -> datetime | None:
        """`dlq_received_at`, else the record's broker timestamp, else None."""
        try:
            return parse_rfc3339(self.received_at)
        except ValueError:
            if self.timestamp_ms is None:
                return None
            return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    def sort_key(self) -> tuple[float, int, int]:
        moment = self.received()
        return (moment.timestamp() if moment else 0.0, self.partition, self.offset)


def parse_dead_letter(
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    headers: Iterable[tuple[str, bytes]],
    value: bytes,
) -> DeadLetter:
    """A dead letter from a record's parts; tolerant of missing or damaged headers."""
    found = {name: raw.decode("utf-8", "replace") for name, raw in headers}
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        reason=found.get(REASON, ""),
        errors=_errors(found.get(ERRORS)),
        tenant_id=found.get(TENANT_ID, ""),
        api_key_id=found.get(API_KEY_ID, ""),
        request_id=found.get(REQUEST_ID, ""),
        received_at=found.get(RECEIVED_AT, ""),
        value=value,
        cloudevent={
            name.removeprefix(CLOUDEVENT_PREFIX): text
            for name, text in found.items()
            if name.startswith(CLOUDEVENT_PREFIX)
        },
    )


def _errors(raw: str | None) -> tuple[dict[str, str], ...]:
    if not raw:
        return ()
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ({"field": "", "message": raw, "code": "unreadable"},)
    if not isinstance(decoded, list):
        return ()
    return tuple(
        {str(k): str(v) for k, v in item.items()} for item in decoded if isinstance(item, dict)
    )
