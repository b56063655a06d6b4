"""The ingest use case: envelopes in, per-event outcomes out, every accepted event acknowledged.

The only I/O is through the `Publisher` port; ids and clocks come from the caller, so the
whole flow runs under test with a fake publisher.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from audit_ingest.domain.enrichment import Processing, RequestContext, enrich
from audit_ingest.domain.envelope import Envelope
from audit_ingest.domain.limits import Limits
from audit_ingest.domain.principal import Principal
from audit_ingest.domain.records import (
    KafkaRecord,
    build_dead_letter,
    build_record,
    default_source,
    serialize,
)
from audit_ingest.domain.timestamps import format_rfc3339_ms, parse_rfc3339
from audit_ingest.domain.validation import validate_event
from audit_ingest.errors import FieldError, InvalidEvent, SinkUnavailable
from audit_ingest.ports import Publisher

# Room for what enrichment adds (ids, processing, client) on top of the event as sent.
ENRICHMENT_HEADROOM_BYTES = 4096
MAX_ERRORS_PER_EVENT = 50


@dataclass(frozen=True, slots=True)
class Accepted:
    index: int
    event_id: str


@dataclass(frozen=True, slots=True)
class Rejected:
    index: int
    errors: tuple[FieldError, ...]


Outcome = Accepted | Rejected


@dataclass(frozen=True, slots=True)
class _Prepared:
    index: int
    event_id: str
    record: KafkaRecord
    envelope: Envelope


class IngestService:
    def __init__(
        self,
        publisher: Publisher,
        *,
        limits: Limits,
        processing: Processing,
        topic: str,
        dlq_topic: str,
        ack_timeout: float,
        new_event_id: Callable[[], str],
    ) -> None:
        self._publisher = publisher
        self._limits = limits
        self._processing = processing
        self._topic = topic
        self._dlq_topic = dlq_topic
        self._ack_timeout = ack_timeout
        self._new_event_id = new_event_id

    async def ingest(
        self, envelopes: Sequence[Envelope], principal: Principal, request: RequestContext
    ) -> list[Outcome]:
        """Validate, enrich and durably publish; one outcome per envelope, in order.

        :raises SinkUnavailable: no event could be acknowledged (nothing was accepted).
        """
        outcomes: dict[int, Outcome] = {}
        prepared: list[_Prepared] = []
        dead_letters: list[KafkaRecord] = []
        for index, envelope in enumerate(envelopes):
            try:
                prepared.append(self._prepare(index, envelope, principal, request))
            except InvalidEvent as exc:
                errors = tuple(exc.errors[:MAX_ERRORS_PER_EVENT])
                outcomes[index] = Rejected(index, errors)
                dead_letters.append(
                    self._dead_letter(envelope, "validation_failed", errors, principal, request)
                )
        if dead_letters:
            # Rejections are already reported to the client; their dead letters are a record
            # for operators, so they do not hold the response.
            self._publisher.publish_nowait(dead_letters)
        if prepared:
            await self._publish(prepared, outcomes, principal, request)
        return [outcomes[index] for index in range(len(envelopes))]

    def _prepare(
        self, index: int, envelope: Envelope, principal: Principal, request: RequestContext
    ) -> _Prepared:
        origin_time = envelope.origin.time if envelope.origin else None
        valid = validate_event(
            envelope.payload,
            tenant_id=principal.tenant_id,
            received_at=request.received_at,
            limits=self._limits,
            default_time=parse_rfc3339(origin_time) if origin_time else None,
        )
        event_id = self._new_event_id()
        enriched = enrich(
            valid,
            event_id=event_id,
            principal=principal,
            request=request,
            processing=self._processing,
            origin=envelope.origin,
        )
        value = serialize(enriched)
        if len(value) > self._limits.max_event_bytes + ENRICHMENT_HEADROOM_BYTES:
            raise InvalidEvent(
                [
                    FieldError(
                        "",
                        f"The event is larger than {self._limits.max_event_bytes} bytes.",
                        "event_too_large",
                    )
                ]
            )
        source = envelope.origin.source if envelope.origin else default_source(principal)
        record = build_record(enriched, value, topic=self._topic, source=source)
        return _Prepared(index, event_id, record, envelope)

    async def _publish(
        self,
        prepared: list[_Prepared],
        outcomes: dict[int, Outcome],
        principal: Principal,
        request: RequestContext,
    ) -> None:
        deliveries = await self._publisher.publish(
            [item.record for item in prepared], self._ack_timeout
        )
        permanent: list[KafkaRecord] = []
        acknowledged = 0
        for item, delivery in zip(prepared, deliveries, strict=True):
            if delivery.acknowledged:
                acknowledged += 1
                outcomes[item.index] = Accepted(item.index, item.event_id)
                continue
            if not delivery.retriable:
                error = FieldError(
                    "",
                    f"The broker refused the event ({delivery.error}); it was kept in the "
                    "dead-letter topic for operators. Retrying it will not help.",
                    "sink_rejected",
                )
                permanent.append(
                    self._dead_letter(item.envelope, "produce_failed", (error,), principal, request)
                )
                outcomes[item.index] = Rejected(item.index, (error,))
                continue
            outcomes[item.index] = Rejected(
                item.index,
                (
                    FieldError(
                        "",
                        "The event was not stored: the broker did not acknowledge it in time. "
                        "Send it again.",
                        "sink_unavailable",
                    ),
                ),
            )
        if permanent:
            self._publisher.publish_nowait(permanent)
        if acknowledged == 0:
            raise SinkUnavailable(
                "The event store did not acknowledge the event(s) in time; nothing was "
                "accepted. Retry the request."
            )

    def _dead_letter(
        self,
        envelope: Envelope,
        reason: str,
        errors: Sequence[FieldError],
        principal: Principal,
        request: RequestContext,
    ) -> KafkaRecord:
        return build_dead_letter(
            _original_bytes(envelope),
            topic=self._dlq_topic,
            reason=reason,
            errors=errors,
            tenant_id=principal.tenant_id,
            request_id=request.request_id,
            received_at=format_rfc3339_ms(request.received_at),
        )


def _original_bytes(envelope: Envelope) -> bytes:
    if envelope.raw is not None:
        return envelope.raw
    try:
        return orjson.dumps(envelope.payload)
    except TypeError:  # pragma: no cover - parsed JSON always re-encodes
        return b""
