"""The per-event pipeline: one envelope in, a refusal or a Kafka record out. Pure.

Two steps, because an event's id is chosen between them (a retry of a stored event gets the
id it was stored under, which only the idempotency store knows):

1. `check_events`: every rule an event must pass (schema, free-form limits, tenant, timestamp,
   size) and its retry identity, for each event of a request. It is the whole decision to
   accept or refuse: the ingest service, the dead-letter replay and its dry run, and the
   hostile-input harness all call it (`check_event` is it for one event), so none of them can
   accept what another refuses.
2. `build_event_records`: enrichment and the CloudEvents-binary Kafka record. It cannot refuse
   an event that passed step 1 (`build_event_record`: one event).

`prepare_event` runs both, for callers that already have the id. Both steps take a request's
events together (the compiled path checks them in one call, the record parts they share are
written once), but each event's decision and record are its own: what it gets alone
(tests/unit/test_compiled.py).

Each step runs compiled (`compiled`, native/) for the events that path accepts, and in Python
for every other: a refusal, and its every-field error list, always comes from Python. Both give
the same record bytes (tests/unit/test_compiled.py); `Rules.compiled=False` runs Python only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from audit_ingest.domain.compiled import CompiledEvent, CompiledValues, check_compiled
from audit_ingest.domain.enrichment import Processing, RequestContext, enrich
from audit_ingest.domain.envelope import Envelope
from audit_ingest.domain.idempotency import fingerprint, idempotency_key
from audit_ingest.domain.limits import Limits
from audit_ingest.domain.principal import Principal
from audit_ingest.domain.records import KafkaRecord, default_source, record_of, serialize
from audit_ingest.domain.timestamps import parse_rfc3339
from audit_ingest.domain.validation import ValidEvent, validate_event
from audit_ingest.errors import InvalidEvent


@dataclass(frozen=True, slots=True)
class Rules:
    """What the pipeline applies besides the event itself: limits, who writes, where to."""

    limits: Limits
    processing: Processing
    topic: str
    # False: every event takes the Python pipeline (COMPILED_PIPELINE; for comparisons).
    compiled: bool = True


class CheckedEvent(NamedTuple):
    """An event that passed every rule, with its retry identity (None: the client gave none).

    `fingerprint` digests the content, so a retry is told from a key reused for another event.
    A NamedTuple for its cost (see `Envelope`).
    """

    envelope: Envelope
    # ValidEvent from the Python pipeline, CompiledEvent from the compiled path.
    valid: ValidEvent | CompiledEvent
    retry_key: str | None
    fingerprint: str | None


def check_events(
    envelopes: Sequence[Envelope],
    *,
    principal: Principal,
    request: RequestContext,
    limits: Limits,
    request_key: str | None = None,
    compiled: bool = True,
) -> list[CheckedEvent | InvalidEvent]:
    """Step 1: the accept-or-refuse decision for each of a request's events, in order.

    One call for the request's events, so the compiled path checks them in one pass; each
    event's decision is its own (`check_event`'s for it alone).

    :param request_key: the request's `Idempotency-Key` (single events); an event's own
        `idempotency_key` takes precedence, then the CloudEvent's source + id.
    :param compiled: try the compiled path first (False: Python only).
    :returns: per event, the checked event, or the `InvalidEvent` naming every failing field.
    """
    taken = (
        check_compiled(envelopes, principal=principal, request=request, limits=limits)
        if compiled
        else [None] * len(envelopes)
    )
    out: list[CheckedEvent | InvalidEvent] = []
    append = out.append
    for envelope, accepted in zip(envelopes, taken, strict=True):
        if accepted is not None:
            event, own_key = accepted
            append(_checked(envelope, event, own_key or request_key))
            continue
        origin_time = envelope.origin.time if envelope.origin else None
        try:
            valid = validate_event(
                envelope.payload,
                tenant_id=principal.tenant_id,
                received_at=request.received_at,
                limits=limits,
                default_time=parse_rfc3339(origin_time) if origin_time else None,
            )
        except InvalidEvent as refused:
            append(refused)
            continue
        append(_checked(envelope, valid, valid.fields.get("idempotency_key") or request_key))
    return out


def check_event(
    envelope: Envelope,
    *,
    principal: Principal,
    request: RequestContext,
    limits: Limits,
    request_key: str | None = None,
    compiled: bool = True,
) -> CheckedEvent:
    """Step 1 for one event (`check_events` for a request of one).

    :raises InvalidEvent: naming every failing field.
    """
    [checked] = check_events(
        [envelope],
        principal=principal,
        request=request,
        limits=limits,
        request_key=request_key,
        compiled=compiled,
    )
    if isinstance(checked, InvalidEvent):
        raise checked
    return checked


def _checked(
    envelope: Envelope, valid: ValidEvent | CompiledEvent, explicit_key: str | None
) -> CheckedEvent:
    key = idempotency_key(envelope, explicit_key)
    if key is None:  # the usual event: no retry identity, nothing to digest
        return CheckedEvent(envelope, valid, None, None)
    return CheckedEvent(envelope, valid, key, fingerprint(envelope.payload))


def build_event_records(
    checked: Sequence[tuple[CheckedEvent, str]],
    *,
    principal: Principal,
    request: RequestContext,
    rules: Rules,
) -> list[KafkaRecord]:
    """Step 2: each (checked event, event_id) as the enriched record for the main topic."""
    compiled = CompiledValues(principal, request, rules.processing)
    default = default_source(principal)
    topic, tenant_id = rules.topic, principal.tenant_id
    records: list[KafkaRecord] = []
    append = records.append
    for event, event_id in checked:
        origin = event.envelope.origin
        valid = event.valid
        if isinstance(valid, CompiledEvent):
            value = compiled.value(valid, event_id, origin)
            timestamp = valid.timestamp
        else:
            enriched = enrich(
                valid,
                event_id=event_id,
                principal=principal,
                request=request,
                processing=rules.processing,
                origin=origin,
            )
            value, timestamp = serialize(enriched), enriched["timestamp"]
        append(
            record_of(
                value,
                event_id=event_id,
                tenant_id=tenant_id,
                timestamp=timestamp,
                topic=topic,
                source=origin.source if origin else default,
            )
        )
    return records


def build_event_record(
    checked: CheckedEvent,
    *,
    event_id: str,
    principal: Principal,
    request: RequestContext,
    rules: Rules,
) -> KafkaRecord:
    """Step 2 for one event (`build_event_records` for one)."""
    [record] = build_event_records(
        [(checked, event_id)], principal=principal, request=request, rules=rules
    )
    return record


def prepare_event(
    envelope: Envelope,
    *,
    event_id: str,
    principal: Principal,
    request: RequestContext,
    rules: Rules,
    request_key: str | None = None,
) -> KafkaRecord:
    """Both steps for one event whose id is already known.

    :raises InvalidEvent: naming every failing field.
    """
    checked = check_event(
        envelope,
        principal=principal,
        request=request,
        limits=rules.limits,
        request_key=request_key,
        compiled=rules.compiled,
    )
    return build_event_record(
        checked, event_id=event_id, principal=principal, request=request, rules=rules
    )
