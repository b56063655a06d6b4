"""Replaying dead letters through the ingest path, exactly once per dead letter.

Each chosen record's original bytes go through `IngestService` as one event, with the rules in
force now, under a principal rebuilt from its headers (tenant, API key id) and a request whose
id is `dlq-replay:<partition>:<offset>` and whose receive time is the original one. The service
validates, claims the idempotency key, enriches and publishes to the main topic with the same
producer settings as the functions (acks=all, idempotence).

Exactly once: the idempotency key of a replay is derived from the dead letter's topic,
partition and offset (`dlq-replay:<topic>:<partition>:<offset>`), or is the event's own
`idempotency_key` when it has one (so a replay also recognises an event the client has since
resent under that key). A second replay finds the key `done` and produces nothing. Records are
remembered for the idempotency store's retention (24 h); replaying the same dead letter again
after that would store it again.

Unlike the functions, a replay does not fail open: if Redis (the idempotency store) does not
answer, the replay stops rather than risk a duplicate. Records that are still invalid are
reported, and never written to the dead-letter topic again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import orjson

from audit_ingest.bootstrap import build_idempotency_store, build_publisher, build_service
from audit_ingest.domain.dead_letters import DeadLetter
from audit_ingest.domain.enrichment import RequestContext
from audit_ingest.domain.envelope import CloudEventOrigin, Envelope
from audit_ingest.domain.idempotency import Claim, ClaimState
from audit_ingest.domain.limits import Limits
from audit_ingest.domain.pipeline import check_event
from audit_ingest.domain.principal import Principal
from audit_ingest.domain.records import KafkaRecord
from audit_ingest.domain.timestamps import parse_rfc3339
from audit_ingest.errors import FieldError, InvalidEvent, SinkUnavailable, Unavailable
from audit_ingest.ops.keys import parse_duration
from audit_ingest.ports import Delivery, IdempotencyStore, LateDeliveries, Publisher
from audit_ingest.service import KEY_REUSED, SINK_CODES, Accepted
from audit_ingest.settings import Settings

REPLAY_FUNCTION = "dlq-replay"
Status = Literal["replayed", "already_replayed", "still_invalid", "failed", "would_replay"]


class ReplayAborted(Exception):
    """The replay cannot continue safely (the idempotency store did not answer)."""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    letter: DeadLetter
    status: Status
    event_id: str | None = None
    errors: tuple[FieldError, ...] = ()

    @property
    def detail(self) -> str:
        if self.errors:
            first = self.errors[0]
            where = first.field or "(event)"
            more = f" (+{len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            return f"{where}/{first.code}: {first.message}{more}"
        return self.event_id or ""


@dataclass
class ReplayReport:
    results: list[ReplayResult] = field(default_factory=list)
    # Set when the replay stopped early (the idempotency store did not answer): why.
    aborted: str | None = None

    def count(self, status: Status) -> int:
        return sum(1 for result in self.results if result.status == status)

    def of(self, status: Status) -> list[ReplayResult]:
        return [result for result in self.results if result.status == status]


def replay_key(letter: DeadLetter) -> str:
    """The per-request idempotency key of a replay: the dead letter's place in the log."""
    return f"dlq-replay:{letter.topic}:{letter.partition}:{letter.offset}"


def replay_request_id(letter: DeadLetter) -> str:
    return f"dlq-replay:{letter.partition}:{letter.offset}"


def _request(letter: DeadLetter) -> RequestContext:
    """The replay's request: its id names the record, its receive time is the original one."""
    return RequestContext(
        request_id=replay_request_id(letter),
        received_at=letter.received() or datetime.now(UTC),
    )


def _principal(letter: DeadLetter) -> Principal:
    return Principal(
        tenant_id=letter.tenant_id,
        api_key_id=letter.api_key_id,
        scopes=("events:write",),
        rate_limit=0,
    )


def _unreplayable(letter: DeadLetter) -> tuple[FieldError, ...]:
    """Why a record cannot be replayed at all, before any rule runs."""
    if not letter.tenant_id:
        return (FieldError("", "The record has no dlq_tenant_id header.", "missing_header"),)
    return ()


def _envelope(letter: DeadLetter) -> Envelope | FieldError:
    try:
        payload = orjson.loads(letter.value)
    except orjson.JSONDecodeError as exc:
        return FieldError("", f"The original bytes are not valid JSON: {exc}.", "malformed_body")
    return Envelope(payload=payload, raw=letter.value, origin=_origin(letter))


def _origin(letter: DeadLetter) -> CloudEventOrigin | None:
    """The CloudEvent the event arrived in, restored from the dead letter's dlq_ce_* headers."""
    attributes = letter.cloudevent
    if not all(attributes.get(name) for name in ("id", "source", "type")):
        return None
    return CloudEventOrigin(
        id=attributes["id"],
        source=attributes["source"],
        type=attributes["type"],
        time=attributes.get("time"),
        subject=attributes.get("subject"),
    )


class _KeepDeadLetters:
    """The publisher the service sees: records to the main topic go out; dead letters do not
    (a record that is still invalid is reported, not written to the dead-letter topic again)."""

    def __init__(self, inner: Publisher, dlq_topic: str) -> None:
        self._inner = inner
        self._dlq_topic = dlq_topic

    async def publish(
        self,
        records: Sequence[KafkaRecord],
        timeout: float,
        on_late: LateDeliveries | None = None,
    ) -> list[Delivery]:
        return await self._inner.publish(records, timeout, on_late)

    def publish_nowait(self, records: Sequence[KafkaRecord]) -> None:
        others = [r for r in records if r.topic != self._dlq_topic]
        if others:
            self._inner.publish_nowait(others)

    async def ping(self, timeout: float) -> bool:
        return await self._inner.ping(timeout)

    def close(self, timeout: float) -> int:
        return self._inner.close(timeout)


class _StrictIdempotency:
    """The idempotency store without the functions' fail-open: an outage stops the replay."""

    def __init__(self, inner: IdempotencyStore) -> None:
        self._inner = inner

    async def claim(self, tenant_id: str, claims: Sequence[Claim]) -> list[ClaimState]:
        try:
            return await self._inner.claim(tenant_id, claims)
        except Unavailable as exc:
            raise ReplayAborted(
                "the idempotency store (Redis) did not answer; nothing more was replayed"
            ) from exc

    async def settle(
        self,
        tenant_id: str,
        done: Sequence[tuple[Claim, str]],
        failed: Sequence[Claim],
        held: Sequence[Claim] = (),
    ) -> None:
        try:
            await self._inner.settle(tenant_id, done, failed, held)
        except Unavailable as exc:
            raise ReplayAborted(
                "a record was replayed but the idempotency store (Redis) did not record it: "
                "replaying it again is refused until its claim's deadline, later it is written "
                "again under the same event_id"
            ) from exc

    async def lookup(self, tenant_id: str, key: str) -> ClaimState | None:
        try:
            return await self._inner.lookup(tenant_id, key)
        except Unavailable as exc:
            raise ReplayAborted(f"the idempotency store (Redis) did not answer: {exc}") from exc

    async def close(self) -> None:
        await self._inner.close()


class Replayer:
    """Replays dead letters one by one (each one request of one event)."""

    def __init__(
        self,
        settings: Settings,
        *,
        publisher: Publisher | None = None,
        idempotency: IdempotencyStore | None = None,
        redis_timeout: float = 2.0,
    ) -> None:
        self._publisher = _KeepDeadLetters(
            publisher or build_publisher(settings), settings.kafka_dlq_topic
        )
        self._idempotency = _StrictIdempotency(
            idempotency or build_idempotency_store(settings, timeout=redis_timeout)
        )
        self._service = build_service(
            settings, self._publisher, self._idempotency, function=REPLAY_FUNCTION
        )

    async def replay(self, letter: DeadLetter) -> ReplayResult:
        problems = _unreplayable(letter)
        if problems:
            return ReplayResult(letter, "still_invalid", errors=problems)
        envelope = _envelope(letter)
        if isinstance(envelope, FieldError):
            return ReplayResult(letter, "still_invalid", errors=(envelope,))
        try:
            (outcome,) = await self._service.ingest(
                [envelope],
                _principal(letter),
                _request(letter),
                request_idempotency_key=replay_key(letter),
            )
        except SinkUnavailable as exc:
            return ReplayResult(
                letter, "failed", errors=(FieldError("", exc.message, "sink_unavailable"),)
            )
        if isinstance(outcome, Accepted):
            status: Status = "already_replayed" if outcome.received_at else "replayed"
            return ReplayResult(letter, status, event_id=outcome.event_id)
        if any(error.code in SINK_CODES for error in outcome.errors):
            return ReplayResult(letter, "failed", errors=outcome.errors)
        return ReplayResult(letter, "still_invalid", errors=outcome.errors)

    async def run(
        self, letters: Sequence[DeadLetter], progress: Callable[[ReplayResult], None]
    ) -> ReplayReport:
        report = ReplayReport()
        for letter in letters:
            try:
                result = await self.replay(letter)
            except ReplayAborted as exc:
                report.aborted = str(exc)
                break
            report.results.append(result)
            progress(result)
        return report

    async def close(self) -> int:
        await self._idempotency.close()
        return await asyncio.to_thread(self._publisher.close, 10.0)


async def dry_run(
    settings: Settings,
    letters: Sequence[DeadLetter],
    progress: Callable[[ReplayResult], None],
    *,
    idempotency: IdempotencyStore | None = None,
    redis_timeout: float = 2.0,
) -> ReplayReport:
    """What a replay would do: the same pipeline step that decides (`check_event`, under the
    same principal, request and key as `Replayer`), and a read-only look at the idempotency
    store. Nothing is claimed or written."""
    store = _StrictIdempotency(
        idempotency or build_idempotency_store(settings, timeout=redis_timeout)
    )
    limits = settings.limits()
    report = ReplayReport()
    try:
        for letter in letters:
            result = await _dry_one(letter, store, limits)
            report.results.append(result)
            progress(result)
    finally:
        await store.close()
    return report


async def _dry_one(letter: DeadLetter, store: _StrictIdempotency, limits: Limits) -> ReplayResult:
    problems = _unreplayable(letter)
    if problems:
        return ReplayResult(letter, "still_invalid", errors=problems)
    envelope = _envelope(letter)
    if isinstance(envelope, FieldError):
        return ReplayResult(letter, "still_invalid", errors=(envelope,))
    try:
        checked = check_event(
            envelope,
            principal=_principal(letter),
            request=_request(letter),
            limits=limits,
            request_key=replay_key(letter),
        )
    except InvalidEvent as exc:
        return ReplayResult(letter, "still_invalid", errors=tuple(exc.errors))
    assert checked.retry_key is not None  # a replay always has its key
    stored = await store.lookup(letter.tenant_id, checked.retry_key)
    if stored is not None and stored.status == "done":
        if stored.fingerprint == checked.fingerprint:
            return ReplayResult(letter, "already_replayed", event_id=stored.event_id)
        return ReplayResult(letter, "still_invalid", errors=(KEY_REUSED,))
    return ReplayResult(letter, "would_replay")


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """RFC 3339 (`2026-01-01T00:00:00Z`), a date (`2026-01-01`, midnight UTC), or a duration
    back from now (`90m`, `24h`, `7d`)."""
    text = value.strip()
    try:
        return (now or datetime.now(UTC)) - parse_duration(text)
    except ValueError:
        pass
    if len(text) == 10:
        text += "T00:00:00Z"
    return parse_rfc3339(text)
