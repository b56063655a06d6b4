"""Which events of a batch were not delivered, and why: what batchers hand to `on_error`."""

from __future__ import annotations

import re
from collections.abc import Sequence

from audit_ingest_sdk.errors import AuditIngestError, ValidationError
from audit_ingest_sdk.prepare import PreparedEvent
from audit_ingest_sdk.results import BatchResult, FailedEvent, FieldError

# A batch's 400 names fields `events[3].actor.id`.
_EVENT_FIELD = re.compile(r"^events\[(\d+)\]\.?(.*)$")


def failures_from_result(events: Sequence[PreparedEvent], result: BatchResult) -> list[FailedEvent]:
    """The events a 202 answer did not store, with the server's reasons."""
    return [
        FailedEvent(
            event=events[item.index].payload,
            idempotency_key=item.idempotency_key,
            errors=item.errors,
        )
        for item in result.items
        if not item.accepted
    ]


def failures_from_error(
    events: Sequence[PreparedEvent], error: AuditIngestError
) -> list[FailedEvent]:
    """Every event of a batch whose request failed; a 400's field errors go to their event."""
    per_event: dict[int, list[FieldError]] = {}
    if isinstance(error, ValidationError):
        for field_error in error.errors:
            match = _EVENT_FIELD.match(field_error.field)
            if match:
                index = int(match.group(1))
                local = FieldError(match.group(2), field_error.message, field_error.code)
                per_event.setdefault(index, []).append(local)
    return [
        FailedEvent(
            event=event.payload,
            idempotency_key=event.idempotency_key,
            errors=tuple(per_event.get(index, ())),
            error=error,
        )
        for index, event in enumerate(events)
    ]
