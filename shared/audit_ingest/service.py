"""The ingest use case: envelopes in, per-event outcomes out, every accepted event acknowledged.

The only I/O is through the ports (`Publisher`, `IdempotencyStore`); ids and clocks come from
the caller, so the whole flow runs under test with fakes.

For each request: check every event (`domain.pipeline.check_events`: the one accept-or-refuse
decision); settle repeats of a retry key inside the request (the later copy follows the first
one, with no wait); claim the keys of the rest (a retry of a stored event gets the original
event_id back and produces nothing); build the records (`build_event_records`), publish and
await every acknowledgement; settle the claims.

A record still unacknowledged at the request's deadline is answered 503, but the producer
keeps trying it: its claim stays `pending` until the producer reports how it ended (`done`
with its event_id, or `retry`), so a retry of it waits for that outcome instead of writing a
second copy that might land beside the first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from audit_ingest.domain.dead_letters import build_dead_letter
from audit_ingest.domain.enrichment import RequestContext
from audit_ingest.domain.envelope import Envelope
from audit_ingest.domain.idempotency import Claim, ClaimState, first_uses
from audit_ingest.domain.pipeline import CheckedEvent, Rules, build_event_records, check_events
from audit_ingest.domain.principal import Principal
from audit_ingest.domain.records import KafkaRecord
from audit_ingest.errors import FieldError, InvalidEvent, SinkUnavailable, Unavailable
from audit_ingest.metrics import DLQ_RECORDS, IDEMPOTENCY, LATE_DELIVERIES
from audit_ingest.ports import Delivery, IdempotencyStore, LateDeliveries, Publisher

log = logging.getLogger(__name__)

MAX_ERRORS_PER_EVENT = 50
PENDING_POLL_SECONDS = 0.025
# The least a request waits for its records' acknowledgements, even when waiting on another
# request's claim used up its deadline (the records are produced either way; a healthy broker
# answers well within this).
MIN_ACK_WAIT_SECONDS = 0.5
# A settlement the store refused (a timeout in a burst trips its breaker for a second) is tried
# again after these pauses, in the background, while the claims are still pending: a lost
# settlement leaves a claim to pass its deadline, and a held claim past its deadline lets a retry
# write a second copy (under the same event_id) while the first may still land (the long
# function-isolation runs).
SETTLE_RETRY_PAUSES = (0.3, 1.0, 2.0)

SINK_UNAVAILABLE = FieldError(
    "",
    "The broker did not acknowledge the event in time. Send it again with the same retry key: "
    "if it is written after all, the retry gets its event_id instead of storing it twice.",
    "sink_unavailable",
)
SINK_CODES = frozenset({"sink_unavailable", "sink_rejected"})
IN_PROGRESS = FieldError(
    "",
    "Another request with the same idempotency key is still being stored. Send it again.",
    "sink_unavailable",
)
KEY_REUSED = FieldError(
    "idempotency_key",
    "This idempotency key was already used for a different event in the last 24 h; use a new "
    "key for a new event.",
    "idempotency_key_reused",
)


# Not frozen, though never mutated (as `_Valid` below): one is made for every event, and a
# frozen dataclass's `__init__` (0.50 µs) costs four times a plain one's (0.12). Not a
# NamedTuple: its `index` field would hide `tuple.index`.
@dataclass(slots=True)
class Accepted:
    """An event stored (or stored earlier)."""

    index: int
    event_id: str
    # Set when this is a retry of an event stored earlier: the original receive time.
    received_at: str | None = None
    # True when nothing new was stored for it: a retry of a stored event, or a repeat of an
    # earlier event of the same request (same retry key, same content).
    duplicate: bool = False


@dataclass(slots=True)
class Rejected:
    """An event refused, with every reason (not frozen: see `Accepted`)."""

    index: int
    errors: tuple[FieldError, ...]


Outcome = Accepted | Rejected


# Not frozen, though never mutated: made for every event (twice when it holds a claim), and a
# frozen dataclass's `__init__` costs four times a plain one's; it never leaves this module.
@dataclass(slots=True)
class _Valid:
    index: int
    checked: CheckedEvent
    claim: Claim | None


class IngestService:
    def __init__(
        self,
        publisher: Publisher,
        *,
        rules: Rules,
        dlq_topic: str,
        ack_timeout: float,
        new_event_id: Callable[[], str],
        idempotency: IdempotencyStore | None = None,
    ) -> None:
        self._publisher = publisher
        self._rules = rules
        self._dlq_topic = dlq_topic
        self._ack_timeout = ack_timeout
        self._new_event_id = new_event_id
        self._idempotency = idempotency
        # Settlements of claims whose record outlived its request (held: a task only weakly
        # referenced by the loop could be collected before it runs).
        self._late_settlements: set[asyncio.Task[None]] = set()

    async def ingest(
        self,
        envelopes: Sequence[Envelope],
        principal: Principal,
        request: RequestContext,
        *,
        request_idempotency_key: str | None = None,
        started: float | None = None,
    ) -> list[Outcome]:
        """Validate, de-duplicate, enrich and durably publish; one outcome per envelope.

        :param request_idempotency_key: the `Idempotency-Key` header (single events).
        :param started: when the request began (`time.monotonic()`; default: now): the
            request's deadline is `ack_timeout` after it, whatever came before the service
            (authentication, the rate limit, reading the body) included.
        :raises SinkUnavailable: no event could be acknowledged (nothing was accepted).
        """
        outcomes: dict[int, Outcome] = {}
        dead_letters: list[KafkaRecord] = []
        valid: list[_Valid] = []
        decisions = check_events(
            envelopes,
            principal=principal,
            request=request,
            limits=self._rules.limits,
            request_key=request_idempotency_key,
            compiled=self._rules.compiled,
        )
        for index, checked in enumerate(decisions):
            if isinstance(checked, InvalidEvent):
                errors = tuple(checked.errors[:MAX_ERRORS_PER_EVENT])
                outcomes[index] = Rejected(index, errors)
                dead_letters.append(
                    self._dead_letter(
                        envelopes[index], "validation_failed", errors, principal, request
                    )
                )
                continue
            valid.append(_Valid(index, checked, None))
        # A repeat of an earlier event of this request (same retry key) follows that event.
        firsts = first_uses([item.checked.retry_key for item in valid])
        leaders = [
            self._with_claim(item)
            for item, first in zip(valid, firsts, strict=True)
            if first is None
        ]
        repeats = [
            (item, valid[first])
            for item, first in zip(valid, firsts, strict=True)
            if first is not None
        ]
        if dead_letters:
            # Rejections are already reported to the client; their dead letters are a record
            # for operators, so they do not hold the response.
            self._publisher.publish_nowait(dead_letters)
        # One deadline for the whole request: waiting on other requests' claims and then on the
        # broker share it, so a request holds its own claims at most `ack_timeout` (plus the
        # minimum wait) before it settles them, well inside their deadline in the store.
        deadline = (time.monotonic() if started is None else started) + self._ack_timeout
        claimed = await self._claim(leaders, principal, outcomes, deadline)
        held: frozenset[int] = frozenset()
        if claimed:
            wait = max(deadline - time.monotonic(), MIN_ACK_WAIT_SECONDS)
            held = await self._publish(claimed, outcomes, principal, request, wait)
        await self._settle(principal, claimed, outcomes, request, held)
        for item, leader in repeats:
            outcomes[item.index] = _repeat_outcome(item, leader, outcomes[leader.index])
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
    def _with_claim(self, item: _Valid) -> _Valid:
        """`item` with the claim its retry key makes (itself when it has none to make)."""
        checked = item.checked
        if checked.retry_key is None or self._idempotency is None:
            return item
        assert checked.fingerprint is not None  # set whenever there is a key
        claim = Claim(checked.retry_key, self._new_event_id(), checked.fingerprint)
        return _Valid(item.index, checked, claim)

    async def _claim(
        self,
        valid: list[_Valid],
        principal: Principal,
        outcomes: dict[int, Outcome],
        deadline: float,
    ) -> list[tuple[_Valid, str]]:
        """(item, event_id) for every event to publish; settles duplicates in `outcomes`."""
        ready: list[tuple[_Valid, str]] = []
        waiting = [item for item in valid if item.claim is not None]
        ready += [(item, self._new_event_id()) for item in valid if item.claim is None]
        # Without claims, `ready` is `valid` in order already (no sort: a call per event).
        reorder = bool(waiting)
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
                ready += [
                    (_Valid(item.index, item.checked, None), item.claim.event_id)
                    for item in waiting
                    if item.claim is not None
                ]
                break
            still: list[_Valid] = []
            for item, state in zip(waiting, states, strict=True):
                if state.status == "claimed":
                    if item.claim is not None and state.event_id != item.claim.event_id:
                        # An earlier attempt failed or its function died: written again under
                        # its event_id (a copy, should that attempt have landed, shares it).
                        IDEMPOTENCY.labels("resumed").inc()
                    ready.append((item, state.event_id))
                elif state.status == "done":
                    outcomes[item.index] = _stored_outcome(item, state)
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
        if reorder:  # claimed events came after the unclaimed ones, and over several rounds
            ready.sort(key=lambda pair: pair[0].index)
        return ready

    async def _publish(
        self,
        claimed: list[tuple[_Valid, str]],
        outcomes: dict[int, Outcome],
        principal: Principal,
        request: RequestContext,
        wait: float,
    ) -> frozenset[int]:
        """Publish and record each outcome; returns the indices of events whose record the
        producer still holds (answered 503; their claims are settled when it reports)."""
        records = build_event_records(
            [(item.checked, event_id) for item, event_id in claimed],
            principal=principal,
            request=request,
            rules=self._rules,
        )
        on_late = self._late_handler(principal, claimed, request)
        deliveries = await self._publisher.publish(records, wait, on_late)
        permanent: list[KafkaRecord] = []
        held: list[int] = []
        for (item, event_id), delivery in zip(claimed, deliveries, strict=True):
            index = item.index
            if delivery.acknowledged:
                outcomes[index] = Accepted(index, event_id)
            elif delivery.retriable:
                outcomes[index] = Rejected(index, (SINK_UNAVAILABLE,))
                if delivery.pending and item.claim is not None and on_late is not None:
                    held.append(index)
            else:
                error = FieldError(
                    "",
                    f"The broker refused the event ({delivery.error}); it was kept in the "
                    "dead-letter topic for operators. Retrying it will not help.",
                    "sink_rejected",
                )
                permanent.append(
                    self._dead_letter(
                        item.checked.envelope, "produce_failed", (error,), principal, request
                    )
                )
                outcomes[index] = Rejected(index, (error,))
        if permanent:
            self._publisher.publish_nowait(permanent)
        return frozenset(held)

    def _late_handler(
        self,
        principal: Principal,
        claimed: list[tuple[_Valid, str]],
        request: RequestContext,
    ) -> LateDeliveries | None:
        """What settles the claims of records that outlive the request (None: no claims)."""
        if self._idempotency is None or all(item.claim is None for item, _ in claimed):
            return None

        def settle_late(final: dict[int, Delivery]) -> None:
            done: list[tuple[Claim, str]] = []
            failed: list[Claim] = []
            for position, delivery in final.items():
                item, event_id = claimed[position]
                if item.claim is None:
                    continue
                claim = _claim_under(item.claim, event_id)
                if delivery.acknowledged:
                    done.append((claim, request.received_text))
                else:
                    failed.append(claim)
            LATE_DELIVERIES.labels("acknowledged").inc(len(done))
            LATE_DELIVERIES.labels("failed").inc(len(failed))
            if done or failed:
                self._in_background(self._settle_claims(principal.tenant_id, done, failed))

        return settle_late

    async def _settle(
        self,
        principal: Principal,
        claimed: list[tuple[_Valid, str]],
        outcomes: dict[int, Outcome],
        request: RequestContext,
        held: frozenset[int],
    ) -> None:
        if self._idempotency is None or all(item.claim is None for item, _ in claimed):
            return
        received_at = request.received_text
        done: list[tuple[Claim, str]] = []
        failed: list[Claim] = []
        kept: list[Claim] = []
        for item, event_id in claimed:
            if item.claim is None:
                continue
            claim = _claim_under(item.claim, event_id)
            if item.index in held:
                kept.append(claim)
            elif isinstance(outcomes.get(item.index), Accepted):
                done.append((claim, received_at))
            else:
                failed.append(claim)
        await self._settle_claims(principal.tenant_id, done, failed, kept)

    async def _settle_claims(
        self,
        tenant_id: str,
        done: list[tuple[Claim, str]],
        failed: list[Claim],
        held: list[Claim] | None = None,
    ) -> None:
        assert self._idempotency is not None
        held = held or []
        try:
            await self._idempotency.settle(tenant_id, done, failed, held)
        except Unavailable:
            # The answer does not wait for this: settle again in the background.
            self._in_background(self._settle_later(tenant_id, done, failed, held))

    async def _settle_later(
        self,
        tenant_id: str,
        done: list[tuple[Claim, str]],
        failed: list[Claim],
        held: list[Claim],
    ) -> None:
        assert self._idempotency is not None
        for pause in SETTLE_RETRY_PAUSES:
            await asyncio.sleep(pause)
            try:
                await self._idempotency.settle(tenant_id, done, failed, held)
                return
            except Unavailable:
                continue
        count = len(done) + len(failed) + len(held)
        log.warning("idempotency store unavailable; %d claim(s) left to expire", count)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._late_settlements.add(task)
        task.add_done_callback(self._late_settlements.discard)

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
            received_at=request.received_text,
            api_key_id=principal.api_key_id,
            origin=envelope.origin,
        )


def _sink_failure(outcome: Outcome) -> bool:
    return isinstance(outcome, Rejected) and any(
        error.code in SINK_CODES for error in outcome.errors
    )


def _stored_outcome(item: _Valid, state: ClaimState) -> Outcome:
    """The answer for an event whose key was settled earlier: the stored event, or a misuse."""
    assert item.claim is not None
    if state.fingerprint != item.claim.fingerprint:
        IDEMPOTENCY.labels("conflict").inc()
        return Rejected(item.index, (KEY_REUSED,))
    IDEMPOTENCY.labels("duplicate").inc()
    return Accepted(item.index, state.event_id, state.received_at, duplicate=True)


def _claim_under(claim: Claim, event_id: str) -> Claim:
    """The claim as the store holds it: under the event_id the claim step settled on."""
    return Claim(claim.key, event_id, claim.fingerprint)


def _repeat_outcome(item: _Valid, first: _Valid, first_outcome: Outcome) -> Outcome:
    """The answer for a later event of a request that repeats the retry key of an earlier one:
    the earlier one's, when the content is the same (nothing more is stored); a refusal when
    the key was reused for another event."""
    if item.checked.fingerprint != first.checked.fingerprint:
        IDEMPOTENCY.labels("conflict").inc()
        return Rejected(item.index, (KEY_REUSED,))
    IDEMPOTENCY.labels("duplicate").inc()
    if isinstance(first_outcome, Accepted):
        return Accepted(
            item.index, first_outcome.event_id, first_outcome.received_at, duplicate=True
        )
    return Rejected(item.index, first_outcome.errors)


def _original_bytes(envelope: Envelope) -> bytes:
    if envelope.raw is not None:
        return envelope.raw
    try:
        return orjson.dumps(envelope.payload)
    except TypeError:  # pragma: no cover - parsed JSON always re-encodes
        return b""
