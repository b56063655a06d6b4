"""One batch's way to the server, across retries: what is still to send, what was answered.

A batch answered 202 may hold events the broker did not acknowledge in time (`rejected` with
code `sink_unavailable`: not stored, send again). Only those are sent again, with the same
bytes and so the same idempotency keys; everything else keeps its first answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from audit_ingest_sdk._errors import ValidationError
from audit_ingest_sdk._prepare import PreparedEvent
from audit_ingest_sdk._results import BatchItem, BatchResult, FieldError, split_event_field
from audit_ingest_sdk._wire import read_success

RESEND_CODE = "sink_unavailable"


class BatchDelivery:
    """The state of one `send_batch` call: outcomes so far and the events left to send."""

    def __init__(self, events: Sequence[PreparedEvent]) -> None:
        if not events:
            raise ValueError("a batch needs at least one event")
        self._events = list(events)
        self._items: dict[int, BatchItem] = {}
        self._pending = list(range(len(self._events)))

    @property
    def answered(self) -> bool:
        """True once the server answered 202 for some attempt (outcomes exist)."""
        return bool(self._items)

    @property
    def needs_resend(self) -> bool:
        """True when an answered batch still has events to send again."""
        return self.answered and bool(self._pending)

    def pending(self) -> list[PreparedEvent]:
        """The events the next attempt sends."""
        return [self._events[index] for index in self._pending]

    def record(self, response: httpx.Response) -> None:
        """Take in the answer to sending `pending()`; raises the error a non-2xx answer means."""
        body = read_success(response)
        raw_items = body.get("events")
        answered: dict[int, Mapping[str, Any]] = {}
        for raw in raw_items if isinstance(raw_items, list) else []:
            if isinstance(raw, Mapping) and isinstance(raw.get("index"), int):
                answered[raw["index"]] = raw
        still_pending: list[int] = []
        for position, original in enumerate(self._pending):
            item = _item(original, self._events[original], answered.get(position))
            self._items[original] = item
            if (
                not item.accepted
                and item.errors
                and all(error.code == RESEND_CODE for error in item.errors)
            ):
                still_pending.append(original)
        self._pending = still_pending

    def refused(self, error: ValidationError) -> BatchResult | None:
        """The 400 of a batch in which no event was valid, as a `BatchResult`: every event
        rejected with the errors that name it. None when the errors do not give every event
        its own reasons (the body as a whole was refused). Only for a first attempt's 400:
        later attempts send part of the batch, and their errors are recorded by `record`."""
        if self.answered:
            return None
        per_event: dict[int, list[FieldError]] = {}
        for field_error in error.errors:
            split = split_event_field(field_error)
            if split is None or split[0] >= len(self._events):
                return None
            per_event.setdefault(split[0], []).append(split[1])
        if len(per_event) != len(self._events):
            return None
        items = tuple(
            BatchItem(
                index=index,
                status="rejected",
                idempotency_key=event.idempotency_key,
                errors=tuple(per_event[index]),
            )
            for index, event in enumerate(self._events)
        )
        return BatchResult(accepted=0, rejected=len(items), items=items)

    def result(self) -> BatchResult:
        """The outcome of every event, in the order given (call once answered)."""
        items = tuple(self._items[index] for index in range(len(self._events)))
        accepted = sum(item.accepted for item in items)
        return BatchResult(accepted=accepted, rejected=len(items) - accepted, items=items)


def _item(index: int, event: PreparedEvent, raw: Mapping[str, Any] | None) -> BatchItem:
    key = event.idempotency_key
    if raw is None:
        missing = FieldError("", "the server's answer has no outcome for this event", "invalid")
        return BatchItem(index=index, status="rejected", idempotency_key=key, errors=(missing,))
    status = "accepted" if raw.get("status") == "accepted" else "rejected"
    event_id = raw.get("event_id")
    raw_errors = raw.get("errors")
    errors = tuple(
        FieldError.from_json(error)
        for error in (raw_errors if isinstance(raw_errors, list) else [])
    )
    return BatchItem(
        index=index,
        status=status,
        idempotency_key=key,
        event_id=event_id if isinstance(event_id, str) else None,
        errors=errors,
        duplicate=status == "accepted" and raw.get("duplicate") is True,
    )
