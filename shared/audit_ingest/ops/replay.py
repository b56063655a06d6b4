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
from redis import Redis
from redis.exceptions import RedisError
from uuid6 import uuid7

from audit_ingest.adapters.kafka import KafkaPublisher
from audit_ingest.adapters.redis_idempotency import RedisIdempotencyStore
from audit_ingest.bootstrap import package_version, producer_config
from audit_ingest.domain.enrichment import Processing, RequestContext
from audit_ingest.domain.envelope import CloudEventOrigin, Envelope
from audit_ingest.domain.idempotency import (
    Claim,
    ClaimState,
    fingerprint,
    idempotency_key,
    storage_key,
)
from audit_ingest.domain.limits import Limits
from audit_ingest.domain.principal import Principal
from audit_ingest.domain.records import KafkaRecord
from audit_ingest.domain.timestamps import parse_rfc3339
from audit_ingest.domain.validation import validate_event
from audit_ingest.errors import FieldError, InvalidEvent, SinkUnavailable, Unavailable
from audit_ingest.ops.dlq import DeadLetter
from audit_ingest.ops.keys import parse_duration
from audit_ingest.ports import Delivery, IdempotencyStore, Publisher
from audit_ingest.service import SINK_CODES, Accepted, IngestService
from audit_ingest.settings import Settings

REPLAY_FUNCTION = "dlq-replay"
KEY_REUSED = FieldError(
    "idempotency_key",
    "The event's idempotency_key was already used for a different event in the last 24 h.",
    "idempotency_key_reused",
)
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


def _received_at(letter: DeadLetter) -> datetime:
    return letter.received() or datetime.now(UTC)


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

    async def publish(self, records: Sequence[KafkaRecord], timeout: float) -> list[Delivery]:
        return await self._inner.publish(records, timeout)

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
        self, tenant_id: str, done: Sequence[tuple[Claim, str]], failed: Sequence[Claim]
    ) -> None:
        try:
            await self._inner.settle(tenant_id, done, failed)
        except Unavailable as exc:
            raise ReplayAborted(
                "a record was replayed but the idempotency store (Redis) did not record it: "
                "replaying it again within the pending TTL is refused, later it would duplicate"
            ) from exc

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
        self._settings = settings
        delivery_timeout = settings.kafka_delivery_timeout_ms / 1000
        self._publisher = _KeepDeadLetters(
            publisher or KafkaPublisher(producer_config(settings)), settings.kafka_dlq_topic
        )
        self._idempotency = _StrictIdempotency(
            idempotency
            or RedisIdempotencyStore(
                settings.redis_url.get_secret_value(),
                timeout=redis_timeout,
                pending_ttl=delivery_timeout + 5.0,
            )
        )
        self._service = IngestService(
            self._publisher,
            limits=settings.limits(),
            processing=Processing(
                node=settings.node_name,
                function=REPLAY_FUNCTION,
                revision=settings.k_revision,
                version=package_version(),
            ),
            topic=settings.kafka_topic,
            dlq_topic=settings.kafka_dlq_topic,
            ack_timeout=delivery_timeout + 1.0,
            new_event_id=lambda: str(uuid7()),
            idempotency=self._idempotency,
        )

    async def replay(self, letter: DeadLetter) -> ReplayResult:
        problems = _unreplayable(letter)
        if problems:
            return ReplayResult(letter, "still_invalid", errors=problems)
        envelope = _envelope(letter)
        if isinstance(envelope, FieldError):
            return ReplayResult(letter, "still_invalid", errors=(envelope,))
        request = RequestContext(
            request_id=replay_request_id(letter), received_at=_received_at(letter)
        )
        try:
            (outcome,) = await self._service.ingest(
                [envelope],
                _principal(letter),
                request,
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


def dry_run(
    settings: Settings,
    letters: Sequence[DeadLetter],
    progress: Callable[[ReplayResult], None],
    *,
    redis_timeout: float = 2.0,
) -> ReplayReport:
    """What a replay would do: the same rules, and a read-only look at the idempotency store."""
    limits = settings.limits()
    report = ReplayReport()
    client = Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=redis_timeout,
        socket_connect_timeout=redis_timeout,
        decode_responses=True,
    )
    try:
        for letter in letters:
            result = _dry_one(letter, client, limits)
            report.results.append(result)
            progress(result)
    finally:
        client.close()
    return report


def _dry_one(letter: DeadLetter, client: Redis, limits: Limits) -> ReplayResult:
    problems = _unreplayable(letter)
    if problems:
        return ReplayResult(letter, "still_invalid", errors=problems)
    envelope = _envelope(letter)
    if isinstance(envelope, FieldError):
        return ReplayResult(letter, "still_invalid", errors=(envelope,))
    try:
        valid = validate_event(
            envelope.payload,
            tenant_id=letter.tenant_id,
            received_at=_received_at(letter),
            limits=limits,
        )
    except InvalidEvent as exc:
        return ReplayResult(letter, "still_invalid", errors=tuple(exc.errors))
    key = idempotency_key(envelope, valid.event.idempotency_key or replay_key(letter))
    assert key is not None
    try:
        stored = client.get(storage_key(letter.tenant_id, key))
    except (RedisError, OSError) as exc:
        raise ReplayAborted(f"the idempotency store (Redis) did not answer: {exc}") from exc
    parts = stored.split("|") if isinstance(stored, str) else []
    if len(parts) >= 3 and parts[0] == "done":
        if parts[2] == fingerprint(envelope.payload):
            return ReplayResult(letter, "already_replayed", event_id=parts[1])
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
