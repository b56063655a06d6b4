"""Which events of a batch were not delivered, and why: what batchers hand to `on_error`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from audit_ingest_sdk._errors import AuditIngestError, ValidationError
from audit_ingest_sdk._prepare import PreparedEvent
from audit_ingest_sdk._results import BatchResult, FieldError, split_event_field

logger = logging.getLogger("audit_ingest_sdk")


@dataclass(frozen=True)
class FailedEvent:
    """An event a batcher could not deliver, handed to its `on_error` callback.

    `event` is the JSON object as sent (with its `idempotency_key`: enqueue it again to retry
    without risking a duplicate). `errors` are the server's reasons for this event; `error` is
    the request-level exception when the whole request failed (authentication, retries
    exhausted, ...), else None.
    """

    event: dict[str, Any]
    idempotency_key: str
    errors: tuple[FieldError, ...] = ()
    error: AuditIngestError | None = field(default=None, compare=False)


# (`Optional`, not `|`: this line runs on Python 3.9.)
ErrorCallback = Optional[Callable[[list[FailedEvent]], None]]  # noqa: UP045


def report_failures(on_error: ErrorCallback, failures: list[FailedEvent]) -> None:
    """Hand failures to `on_error` (or log them); a failing callback is logged, not raised."""
    if not failures:
        return
    if on_error is None:
        first = failures[0]
        reason = first.error or (first.errors[0] if first.errors else "unknown")
        logger.warning("audit-ingest: %d event(s) not delivered (first: %s)", len(failures), reason)
        return
    try:
        on_error(failures)
    except Exception:
        logger.exception("audit-ingest: the on_error callback raised")


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
            split = split_event_field(field_error)
            if split is not None:
                index, local = split
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
