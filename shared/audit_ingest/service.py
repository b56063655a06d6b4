"""The ingest use case: envelopes in, per-event outcomes out, every accepted event acknowledged.

The only I/O is through the ports (`Publisher`, `IdempotencyStore`); ids and clocks come from
the caller, so the whole flow runs under test with fakes.

For each request: validate every event; claim the idempotency keys of the valid ones (a retry
of a stored event gets the original event_id back and produces nothing); enrich and build the
records of the rest; publish and await every acknowledgement; settle the claims.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from audit_ingest.domain.enrichment import Processing, RequestContext, enrich
from audit_ingest.domain.envelope import Envelope
from audit_ingest.domain.idempotency import Claim, ClaimState, fingerprint, idempotency_key
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
from audit_ingest.domain.validation import ValidEvent, validate_event
from audit_ingest.errors import FieldError, InvalidEvent, SinkUnavailable, Unavailable
from audit_ingest.metrics import DLQ_RECORDS, IDEMPOTENCY
from audit_ingest.ports import IdempotencyStore, Publisher

log = logging.getLogger(__name__)

# Room for what enrichment adds (ids, processing, client) on top of the event as sent.
ENRICHMENT_HEADROOM_BYTES = 4096
MAX_ERRORS_PER_EVENT = 50
PENDING_POLL_SECONDS = 0.025

SINK_UNAVAILABLE = FieldError(
    "",
    "The event was not stored: the broker did not acknowledge it in time. Send it again.",
    "sink_unavailable",
)
SINK_CODES = frozenset({"sink_unavailable", "sink_rejected"})
IN_PROGRESS = FieldError(
    "",
    "Another request with the same idempotency key is still being stored. Send it again.",
    "sink_unavailable",
)


@dataclass(frozen=True, slots=True)
class Accepted:
    index: int
    event_id: str
    # Set when this is a retry of an event stored earlier: the original receive time.
    received_at: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    index: int
    errors: tuple[FieldError, ...]


Outcome = Accepted | Rejected


@dataclass(frozen=True, slots=True)
class _Valid:
    index: int
    envelope: Envelope
    event: ValidEvent
    claim: Claim | None


@dataclass(frozen=True, slots=True)
class _Prepared:
    item: _Valid
    event_id: str
    record: KafkaRecord


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
        idempotency: IdempotencyStore | None = None,
    ) -> None:
        self._publisher = publisher
        self._limits = limits
        self._processing = processing
        self._topic = topic
        self._dlq_topic = dlq_topic
        self._ack_timeout = ack_timeout
        self._new_event_id = new_event_id
        self._idempotency = idempotency

    async def ingest(
        self,
        envelopes: Sequence[Envelope],
        principal: Principal,
        request: RequestContext,
        *,
        request_idempotency_key: str | None = None,
    ) -> list[Outcome]:
        """Validate, de-duplicate, enrich and durably publish; one outcome per envelope.

        :param request_idempotency_key: the `Idempotency-Key` header (single events).
        :raises SinkUnavailable: no event could be acknowledged (nothing was accepted).
        """
        outcomes: dict[int, Outcome] = {}
        dead_letters: list[KafkaRecord] = []
        valid: list[_Valid] = []
        for index, envelope in enumerate(envelopes):
            try:
                valid.append(
                    self._validate(index, envelope, principal, request, request_idempotency_key)
                )
            except InvalidEvent as exc:
                self._reject(index, envelope, exc, outcomes, dead_letters, principal, request)
        claimed = await self._claim(valid, principal, outcomes)
        prepared: list[_Prepared] = []
        for item, event_id in claimed:
            try:
                prepared.append(self._prepare(item, event_id, principal, request))
            except InvalidEvent as exc:
                self._reject(
                    item.index, item.envelope, exc, outcomes, dead_letters, principal, request
                )
        if dead_letters:
            # Rejections are already reported to the client; their dead letters are a record
            # for operators, so they do not hold the response.
            self._publisher.publish_nowait(dead_letters)
        if prepared:
            await self._publish(prepared, outcomes, principal, request)
        await self._settle(principal, claimed, outcomes, request)
        results = [outcomes[index] for index in range(len(envelopes))]
        if not any(isinstance(o, Accepted) for o in results) and any(
            _sink_failure(o) for o in results
        ):
            raise SinkUnavailable(
                "The event store did not acknowledge the event(s) in time; nothing was "
                "accepted. Retry the request."
            )
        return results

    # -- steps -----------------------------------------------------------------------------
    def _validate(
        self,
        index: int,
        envelope: Envelope,
        principal: Principal,
        request: RequestContext,
        request_key: str | None,
    ) -> _Valid:
        origin_time = envelope.origin.time if envelope.origin else None
        event = validate_event(
            envelope.payload,
            tenant_id=principal.tenant_id,
            received_at=request.received_at,
            limits=self._limits,
            default_time=parse_rfc3339(origin_time) if origin_time else None,
        )
        key = idempotency_key(envelope, event.event.idempotency_key or request_key)
        claim = None
        if key is not None and self._idempotency is not None:
            claim = Claim(key, self._new_event_id(), fingerprint(envelope.payload))
        return _Valid(index, envelope, event, claim)

    async def _claim(
        self, valid: list[_Valid], principal: Principal, outcomes: dict[int, Outcome]
    ) -> list[tuple[_Valid, str]]:
        """(item, event_id) for every event to publish; settles duplicates in `outcomes`."""
        ready: list[tuple[_Valid, str]] = []
        waiting = [item for item in valid if item.claim is not None]
        ready += [(item, self._new_event_id()) for item in valid if item.claim is None]
        deadline = time.monotonic() + self._ack_timeout
        while waiting:
            assert self._idempotency is not None
            try:
                states = await self._idempotency.claim(
                    principal.tenant_id, [item.claim for item in waiting if item.claim]
                )
            except Unavailable:
                # Redis down: store the events anyway (at-least-once) rather than refuse them.
                IDEMPOTENCY.labels("unavailable").inc(len(waiting))
                log.warning(
                    "idempotency store unavailable; %d event(s) not de-duplicated", len(waiting)
                )
                ready += [(replace_claim(item), self._new_event_id()) for item in waiting]
                break
            still: list[_Valid] = []
            for item, state in zip(waiting, states, strict=True):
                if state.status == "claimed":
                    ready.append((item, state.event_id))
                elif state.status == "done":
                    self._duplicate(item, state, outcomes)
                else:
                    still.append(item)
            waiting = still
            if waiting and time.monotonic() >= deadline:
                IDEMPOTENCY.labels("in_progress").inc(len(waiting))
                for item in waiting:
                    outcomes[item.index] = Rejected(item.index, (IN_PROGRESS,))
                break
            if waiting:
                await asyncio.sleep(PENDING_POLL_SECONDS)
        ready.sort(key=lambda pair: pair[0].index)
        return ready

    def _duplicate(self, item: _Valid, state: ClaimState, outcomes: dict[int, Outcome]) -> None:
        assert item.claim is not None
        if state.fingerprint != item.claim.fingerprint:
            IDEMPOTENCY.labels("conflict").inc()
            outcomes[item.index] = Rejected(
                item.index,
                (
                    FieldError(
                        "idempotency_key",
                        "This idempotency key was already used for a different event in the "
                        "last 24 h; use a new key for a new event.",
                        "idempotency_key_reused",
                    ),
                ),
            )
            return
        IDEMPOTENCY.labels("duplicate").inc()
        outcomes[item.index] = Accepted(item.index, state.event_id, state.received_at)

    def _prepare(
        self, item: _Valid, event_id: str, principal: Principal, request: RequestContext
    ) -> _Prepared:
        enriched = enrich(
            item.event,
            event_id=event_id,
            principal=principal,
            request=request,
            processing=self._processing,
            origin=item.envelope.origin,
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
        origin = item.envelope.origin
        source = origin.source if origin else default_source(principal)
        record = build_record(enriched, value, topic=self._topic, source=source)
        return _Prepared(item, event_id, record)

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
        for item, delivery in zip(prepared, deliveries, strict=True):
            index = item.item.index
            if delivery.acknowledged:
                outcomes[index] = Accepted(index, item.event_id)
            elif delivery.retriable:
                outcomes[index] = Rejected(index, (SINK_UNAVAILABLE,))
            else:
                error = FieldError(
                    "",
                    f"The broker refused the event ({delivery.error}); it was kept in the "
                    "dead-letter topic for operators. Retrying it will not help.",
                    "sink_rejected",
                )
                permanent.append(
                    self._dead_letter(
                        item.item.envelope, "produce_failed", (error,), principal, request
                    )
                )
                outcomes[index] = Rejected(index, (error,))
        if permanent:
            self._publisher.publish_nowait(permanent)

    async def _settle(
        self,
        principal: Principal,
        claimed: list[tuple[_Valid, str]],
        outcomes: dict[int, Outcome],
        request: RequestContext,
    ) -> None:
        if self._idempotency is None or all(item.claim is None for item, _ in claimed):
            return
        received_at = format_rfc3339_ms(request.received_at)
        done: list[tuple[Claim, str]] = []
        failed: list[Claim] = []
        for item, event_id in claimed:
            if item.claim is None:
                continue
            claim = Claim(item.claim.key, event_id, item.claim.fingerprint)
            if isinstance(outcomes.get(item.index), Accepted):
                done.append((claim, received_at))
            else:
                failed.append(claim)
        try:
            await self._idempotency.settle(principal.tenant_id, done, failed)
        except Unavailable:
            log.warning(
                "idempotency store unavailable; %d claim(s) left to expire", len(done) + len(failed)
            )

    def _reject(
        self,
        index: int,
        envelope: Envelope,
        exc: InvalidEvent,
        outcomes: dict[int, Outcome],
        dead_letters: list[KafkaRecord],
        principal: Principal,
        request: RequestContext,
    ) -> None:
        errors = tuple(exc.errors[:MAX_ERRORS_PER_EVENT])
        outcomes[index] = Rejected(index, errors)
        dead_letters.append(
            self._dead_letter(envelope, "validation_failed", errors, principal, request)
        )

    def _dead_letter(
        self,
        envelope: Envelope,
        reason: str,
        errors: Sequence[FieldError],
        principal: Principal,
        request: RequestContext,
    ) -> KafkaRecord:
        DLQ_RECORDS.labels(reason).inc()
        return build_dead_letter(
            _original_bytes(envelope),
            topic=self._dlq_topic,
            reason=reason,
            errors=errors,
            tenant_id=principal.tenant_id,
            request_id=request.request_id,
            received_at=format_rfc3339_ms(request.received_at),
            api_key_id=principal.api_key_id,
            origin=envelope.origin,
        )


def _sink_failure(outcome: Outcome) -> bool:
    return isinstance(outcome, Rejected) and any(
        error.code in SINK_CODES for error in outcome.errors
    )


def replace_claim(item: _Valid) -> _Valid:
    """The item without its claim (the store is down: nothing to settle)."""
    return _Valid(item.index, item.envelope, item.event, None)


def _original_bytes(envelope: Envelope) -> bytes:
    if envelope.raw is not None:
        return envelope.raw
    try:
        return orjson.dumps(envelope.payload)
    except TypeError:  # pragma: no cover - parsed JSON always re-encodes
        return b""
