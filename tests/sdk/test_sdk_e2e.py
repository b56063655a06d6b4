"""The SDK against the real stack, through a proxy that injects 429s and 503s.

Faults are answered by the proxy before forwarding, so nothing reaches the service twice:
every event must be stored exactly once, which the tests check by reading the topic back
(the test tenant's records, identified by a unique `context.marker` per event). Server-side
de-duplication does not exist yet, so this also shows the SDK never resends what was stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from audit_ingest.settings import Settings
from audit_ingest_sdk import (
    AsyncAuditClient,
    AuditClient,
    AuthenticationError,
    FailedEvent,
    ServiceUnavailableError,
    ValidationError,
)
from tests.sdk.fault_proxy import Exchange, RunningProxy, always, faults_at, never
from tests.stack import KeyFactory, TopicReader

pytestmark = pytest.mark.e2e
Reader = Callable[[str], TopicReader]
BURST = 500


def event(run: str, marker: int) -> dict[str, Any]:
    return {
        "actor": {"id": f"user-{marker}", "type": "user"},
        "action": {"name": "document.viewed"},
        "resource": {"type": "document", "id": f"doc-{marker}"},
        "result": {"success": True},
        "context": {"run": run, "marker": marker},
    }


def stored(reader: TopicReader, tenant: str, expected: int) -> list[dict[str, Any]]:
    """The tenant's records: waits for `expected`, then drains to catch any extra copy."""
    key = tenant.encode()
    reader.read_until(lambda seen: sum(m.key() == key for m in seen) >= expected, timeout=60)
    reader.drain(quiet=2.0)
    return [orjson.loads(m.value() or b"") for m in reader.messages if m.key() == key]


def batch_keys(exchange: Exchange) -> dict[int, str]:
    """marker -> idempotency_key of the events in a batch request."""
    events = exchange.json()["events"]
    return {e["context"]["marker"]: e["idempotency_key"] for e in events}


def assert_retries_waited(proxy: RunningProxy, seconds: float) -> None:
    """After each fault, the same request came back no sooner than Retry-After."""
    exchanges = proxy.app.exchanges
    for fault in proxy.app.faulted():
        retry = next(e for e in exchanges if e.number > fault.number and e.body == fault.body)
        assert retry.at - fault.at >= seconds, (fault.number, retry.number)


def test_the_batcher_delivers_every_event_exactly_once_through_429s_and_503s(
    proxy: RunningProxy, issue_key: KeyFactory, settings: Settings, read_topic: Reader
) -> None:
    issued = issue_key()
    run = uuid.uuid4().hex
    planned = {1: 503, 2: 429, 4: 503, 7: 429, 9: 503, 10: 503}
    proxy.app.plan = faults_at(planned)
    reports: list[FailedEvent] = []
    with (
        AuditClient(issued.secret, proxy.url, max_retries=5) as client,
        client.batcher(max_batch_events=50, flush_interval=0.2, on_error=reports.extend) as b,
    ):
        for marker in range(BURST):
            assert b.enqueue(event(run, marker))
    stats = b.stats()
    assert reports == []
    assert (stats.enqueued, stats.accepted, stats.rejected, stats.dropped) == (BURST, BURST, 0, 0)

    # Every planned fault was hit; each faulted batch came back later, same events, same keys.
    assert sorted(e.number for e in proxy.app.faulted()) == sorted(planned)
    forwarded = proxy.app.forwarded()
    assert {e.status for e in forwarded} == {202}
    sent_keys: dict[int, str] = {}
    for exchange in forwarded:
        sent_keys.update(batch_keys(exchange))
    assert sorted(sent_keys) == list(range(BURST))
    for fault in proxy.app.faulted():
        assert batch_keys(fault).items() <= sent_keys.items()
    assert_retries_waited(proxy, 1.0)

    # Exactly once in the topic, under the keys sent.
    records = stored(read_topic(settings.kafka_topic), issued.stored.tenant_id, BURST)
    markers = [record["context"]["marker"] for record in records]
    assert sorted(markers) == list(range(BURST))
    assert {r["context"]["marker"]: r["idempotency_key"] for r in records} == sent_keys
    assert {record["context"]["run"] for record in records} == {run}


def test_sync_client_retries_faults_and_reports_real_errors(
    proxy: RunningProxy, issue_key: KeyFactory, settings: Settings, read_topic: Reader
) -> None:
    issued = issue_key()
    run = uuid.uuid4().hex
    proxy.app.plan = faults_at({1: 429, 2: 503, 4: 503})
    with AuditClient(issued.secret, proxy.url, max_retries=3) as client:
        accepted = client.send(event(run, 0))  # requests 1 (429), 2 (503), 3
        result = client.send_batch([event(run, m) for m in range(1, 11)])  # 4 (503), 5
        assert uuid.UUID(accepted.event_id).version == 7
        assert (result.accepted, result.rejected) == (10, 0)
        first, second, third, fourth, fifth = proxy.app.exchanges
        single_keys = {e.headers["idempotency-key"] for e in (first, second, third)}
        assert len(single_keys) == 1
        assert [e.status for e in (first, second, third)] == [429, 503, 202]
        assert fourth.body == fifth.body
        assert fifth.status == 202
        assert_retries_waited(proxy, 1.0)

        # Real 400 from the service: not retried, field errors and request id carried.
        proxy.app.plan = never
        invalid = {**event(run, 99), "actor": {"id": 123}}
        with pytest.raises(ValidationError) as raised:
            client.send(invalid)
        assert [(e.field, e.code) for e in raised.value.errors] == [("actor.id", "type")]
        assert raised.value.request_id
        assert raised.value.problem is not None
        assert raised.value.problem["request_id"] == raised.value.request_id
        assert raised.value.attempts == 1
        assert len(proxy.app.exchanges) == 6

    # 503s until the retries run out: the last answer is raised, with its advice.
    proxy.app.plan = always(503)
    with (
        AuditClient(issued.secret, proxy.url, max_retries=1) as impatient,
        pytest.raises(ServiceUnavailableError) as unavailable,
    ):
        impatient.send(event(run, 98))
    assert (unavailable.value.attempts, unavailable.value.retry_after) == (2, 1.0)
    assert unavailable.value.problem is not None
    assert unavailable.value.request_id == unavailable.value.problem["request_id"]
    assert len(proxy.app.exchanges) == 8

    # A key the service does not know: 401, not retried.
    proxy.app.plan = never
    with (
        AuditClient("aik_" + "x" * 46, proxy.url) as stranger,
        pytest.raises(AuthenticationError) as unauthenticated,
    ):
        stranger.send(event(run, 97))
    assert unauthenticated.value.status == 401
    assert len(proxy.app.exchanges) == 9

    records = stored(read_topic(settings.kafka_topic), issued.stored.tenant_id, 11)
    assert sorted(r["context"]["marker"] for r in records) == list(range(11))
    (single,) = [r for r in records if r["context"]["marker"] == 0]
    assert single["event_id"] == accepted.event_id
    assert single["idempotency_key"] == single_keys.pop()
    by_marker = {r["context"]["marker"]: r for r in records}
    for item in result.items:
        assert by_marker[item.index + 1]["event_id"] == item.event_id
        assert by_marker[item.index + 1]["idempotency_key"] == item.idempotency_key


async def test_async_client_and_batcher_through_faults(
    proxy: RunningProxy, issue_key: KeyFactory, settings: Settings, read_topic: Reader
) -> None:
    issued = issue_key()
    run = uuid.uuid4().hex
    proxy.app.plan = faults_at({1: 503, 3: 429, 5: 503, 6: 429})
    async with AsyncAuditClient(issued.secret, proxy.url, max_retries=4) as client:
        accepted = await client.send(event(run, 0))  # 1 (503), 2
        result = await client.send_batch([event(run, m) for m in range(1, 6)])  # 3 (429), 4
        assert result.accepted == 5
        batcher = client.batcher(max_batch_events=40, flush_interval=0.2)
        for marker in range(6, 106):
            assert batcher.enqueue(event(run, marker))
        await batcher.close()
    assert batcher.stats().accepted == 100
    faulted = proxy.app.faulted()
    assert [e.number for e in faulted] == [1, 3, 5, 6]
    assert_retries_waited(proxy, 1.0)
    first, second = proxy.app.exchanges[:2]
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]

    records = stored(read_topic(settings.kafka_topic), issued.stored.tenant_id, 106)
    assert sorted(r["context"]["marker"] for r in records) == list(range(106))
    (single,) = [r for r in records if r["context"]["marker"] == 0]
    assert single["event_id"] == accepted.event_id


def test_lost_answers_are_retried_under_the_same_keys_and_stored_once(
    proxy: RunningProxy, issue_key: KeyFactory, settings: Settings, read_topic: Reader
) -> None:
    # The service stores these requests, but the client gets a 503 instead of the 202: only
    # the same idempotency key on the retry (and the service's de-duplication) avoids a copy.
    issued = issue_key()
    run = uuid.uuid4().hex
    proxy.app.plan = faults_at({1: 503, 3: 503, 6: 503}, lost_answer=True)
    with AuditClient(issued.secret, proxy.url, max_retries=3) as client:
        accepted = client.send(event(run, 0))  # 1 (stored, answer lost), 2
        with client.batcher(max_batch_events=50, flush_interval=0.2) as batcher:
            for marker in range(1, 201):
                batcher.enqueue(event(run, marker))
    assert batcher.stats().accepted == 200
    lost = proxy.app.faulted()
    assert [(e.number, e.upstream_status) for e in lost] == [(1, 202), (3, 202), (6, 202)]
    assert_retries_waited(proxy, 1.0)

    records = stored(read_topic(settings.kafka_topic), issued.stored.tenant_id, 201)
    assert sorted(r["context"]["marker"] for r in records) == list(range(201))
    (single,) = [r for r in records if r["context"]["marker"] == 0]
    assert single["event_id"] == accepted.event_id  # the retry got the original answer


def test_gzip_bodies_are_accepted_by_the_service(
    proxy: RunningProxy, issue_key: KeyFactory, settings: Settings, read_topic: Reader
) -> None:
    issued = issue_key()
    run = uuid.uuid4().hex
    note = "lorem ipsum " * 200
    with AuditClient(issued.secret, proxy.url, gzip=True) as client:
        client.send({**event(run, 0), "metadata": {"note": note}})
        result = client.send_batch([event(run, m) for m in range(1, 31)])
    assert result.accepted == 30
    assert [e.headers.get("content-encoding") for e in proxy.app.exchanges] == ["gzip", "gzip"]
    assert [e.status for e in proxy.app.exchanges] == [202, 202]

    records = stored(read_topic(settings.kafka_topic), issued.stored.tenant_id, 31)
    assert sorted(r["context"]["marker"] for r in records) == list(range(31))
    (single,) = [r for r in records if r["context"]["marker"] == 0]
    assert single["metadata"] == {"note": note}
