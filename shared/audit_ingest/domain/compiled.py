"""The per-event pipeline's accept path, compiled: the Python pipeline's decision and bytes,
in a tenth of its time, for the events it accepts.

`native/` (Rust through PyO3) reads the event as orjson parsed it and either writes the record
value's middle (`"timestamp"` through the event's own fields) or declines. It declines every
event the Python pipeline refuses, and the rarer shapes it does not write itself (a float, a
non-ASCII action name: see `native/src/lib.rs`), so `pipeline.check_events`
then runs the Python pipeline, which stays the reference: the one place that names every
failing field. tests/unit/test_compiled.py holds the two to the same decision and the same
bytes over generated events, valid and not.

A request's events are checked in one native call, with one checker; the parts of a record
that are the same for every event of a request (tenant, api key, request id, client,
processing) are written once per request, by orjson (`CompiledValues`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import orjson
from audit_ingest_native import Checker

from audit_ingest.domain.enrichment import Processing, RequestContext
from audit_ingest.domain.envelope import CloudEventOrigin, Envelope
from audit_ingest.domain.limits import Limits
from audit_ingest.domain.model import checked_email
from audit_ingest.domain.principal import Principal
from audit_ingest.domain.timestamps import format_rfc3339_ms, parse_rfc3339

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_OPEN = b'{"event_id":'


class CompiledEvent(NamedTuple):
    """An event the compiled path accepted: its record value's middle and its timestamp."""

    middle: bytes
    timestamp: str


def check_compiled(
    envelopes: Sequence[Envelope],
    *,
    principal: Principal,
    request: RequestContext,
    limits: Limits,
) -> list[tuple[CompiledEvent, str | None] | None]:
    """Per event, in order: the event and its own `idempotency_key` when it is accepted; None:
    the Python pipeline decides (it refuses the event, or it holds what only Python writes).

    One checker for the request and one native call for all its events."""
    if request.received_at.tzinfo is None:  # only an aware time has an instant to compare
        return [None] * len(envelopes)
    checker = Checker(
        tenant_id=principal.tenant_id,
        received_text=request.received_text,
        latest=(request.received_at + limits.future_skew - _EPOCH) // _MICROSECOND,
        max_depth=limits.max_depth,
        max_string_length=limits.max_string_length,
        max_event_bytes=limits.max_event_bytes,
        check_email=checked_email,
    )
    payloads = [envelope.payload for envelope in envelopes]
    default_texts: list[str | None] | None = None
    unreadable: set[int] = set()  # a CloudEvent `time` not read here: Python decides
    if any(envelope.origin is not None and envelope.origin.time for envelope in envelopes):
        default_texts = []
        for position, envelope in enumerate(envelopes):
            text = None
            if envelope.origin is not None and envelope.origin.time:
                try:
                    text = format_rfc3339_ms(parse_rfc3339(envelope.origin.time))
                except ValueError:
                    unreadable.add(position)
            default_texts.append(text)
    taken = checker.check_many(payloads, default_texts)
    for position in unreadable:
        taken[position] = None
    return [
        None if accepted is None else (CompiledEvent(accepted[0], accepted[1]), accepted[2])
        for accepted in taken
    ]


class CompiledValues:
    """A request's record values for the events the compiled path accepted: the parts around
    each event's middle (tenant, api key, request id, client, processing) written once, by
    orjson, for all of them."""

    __slots__ = ("_end", "_head", "_tail")

    def __init__(
        self, principal: Principal, request: RequestContext, processing: Processing
    ) -> None:
        tail = b',"api_key_id":%b,"request_id":%b' % (
            orjson.dumps(principal.api_key_id),
            orjson.dumps(request.request_id),
        )
        if request.client:
            tail += b',"client":' + orjson.dumps(request.client)
        self._head = b',"tenant_id":' + orjson.dumps(principal.tenant_id) + b","
        self._tail = tail
        self._end = b',"processing":' + orjson.dumps(processing.as_dict()) + b"}"

    def value(self, event: CompiledEvent, event_id: str, origin: CloudEventOrigin | None) -> bytes:
        """The record value, byte for byte what `serialize(enrich(...))` writes for the event."""
        cloudevent = b',"cloudevent":' + orjson.dumps(origin.attributes()) if origin else b""
        return b"".join(
            (
                _OPEN,
                orjson.dumps(event_id),
                self._head,
                event.middle,
                self._tail,
                cloudevent,
                self._end,
            )
        )
