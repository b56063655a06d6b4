"""The per-event pipeline's accept path, compiled: the Python pipeline's decision and bytes,
in a tenth of its time, for the events it accepts.

`native/` (Rust through PyO3) reads the event as orjson parsed it and either writes the record
value's middle (`"timestamp"` through the event's own fields) or declines. It declines every
event the Python pipeline refuses, and the rarer shapes it does not write itself (a float,
a timestamp it cannot read, a non-ASCII... see `native/src/lib.rs`), so `pipeline.check_event`
then runs the Python pipeline, which stays the reference: the one place that names every
failing field. tests/unit/test_compiled.py holds the two to the same decision and the same
bytes over generated events, valid and not.

The parts of a record that are the same for every event of a request (tenant, api key,
request id, client, processing) are written here once per request, by orjson.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class _Checking:
    """A request's checker (made for its first event, reused by the rest of its events)."""

    principal: Principal
    request: RequestContext
    limits: Limits
    checker: Checker


@dataclass(frozen=True, slots=True)
class _Frame:
    """A request's record parts around each event's middle, written once by orjson."""

    principal: Principal
    request: RequestContext
    processing: Processing
    head: bytes
    tail: bytes
    end: bytes


# The last request's checker and frame: a batch's events share them. Compared by identity
# (the cache holds the objects, so an identity cannot be reused while it is cached).
_last_checking: _Checking | None = None
_last_frame: _Frame | None = None


def check_compiled(
    envelope: Envelope, *, principal: Principal, request: RequestContext, limits: Limits
) -> tuple[CompiledEvent, str | None] | None:
    """The event and its own `idempotency_key` when it is accepted; None: the Python pipeline
    decides (it refuses the event, or it holds what only Python writes)."""
    checker = _checker(principal, request, limits)
    if checker is None:
        return None
    origin = envelope.origin
    default_text = None
    if origin is not None and origin.time:
        try:
            default_text = format_rfc3339_ms(parse_rfc3339(origin.time))
        except ValueError:
            return None
    accepted = checker.check(envelope.payload, default_text)
    if accepted is None:
        return None
    middle, timestamp, key = accepted
    return CompiledEvent(middle, timestamp), key


def compiled_value(
    event: CompiledEvent,
    *,
    event_id: str,
    principal: Principal,
    request: RequestContext,
    processing: Processing,
    origin: CloudEventOrigin | None,
) -> bytes:
    """The record value, byte for byte what `serialize(enrich(...))` writes for the event."""
    frame = _frame(principal, request, processing)
    cloudevent = b',"cloudevent":' + orjson.dumps(origin.attributes()) if origin else b""
    return b"".join(
        (_OPEN, orjson.dumps(event_id), frame.head, event.middle, frame.tail, cloudevent, frame.end)
    )


def _checker(principal: Principal, request: RequestContext, limits: Limits) -> Checker | None:
    global _last_checking
    last = _last_checking
    if last is not None and _same(last, request, principal) and last.limits is limits:
        return last.checker
    if request.received_at.tzinfo is None:  # only an aware time has an instant to compare
        return None
    latest = (request.received_at + limits.future_skew - _EPOCH) // _MICROSECOND
    checker = Checker(
        tenant_id=principal.tenant_id,
        received_text=request.received_text,
        latest=latest,
        max_depth=limits.max_depth,
        max_string_length=limits.max_string_length,
        max_event_bytes=limits.max_event_bytes,
        check_email=checked_email,
    )
    _last_checking = _Checking(principal, request, limits, checker)
    return checker


def _frame(principal: Principal, request: RequestContext, processing: Processing) -> _Frame:
    global _last_frame
    last = _last_frame
    if last is not None and _same(last, request, principal) and last.processing is processing:
        return last
    tail = b',"api_key_id":%b,"request_id":%b' % (
        orjson.dumps(principal.api_key_id),
        orjson.dumps(request.request_id),
    )
    if request.client:
        tail += b',"client":' + orjson.dumps(request.client)
    frame = _Frame(
        principal,
        request,
        processing,
        head=b',"tenant_id":' + orjson.dumps(principal.tenant_id) + b",",
        tail=tail,
        end=b',"processing":' + orjson.dumps(processing.as_dict()) + b"}",
    )
    _last_frame = frame
    return frame


def _same(last: _Checking | _Frame, request: RequestContext, principal: Principal) -> bool:
    """`last` was made for this request and caller (the same objects, not equal ones)."""
    return last.request is request and last.principal is principal
