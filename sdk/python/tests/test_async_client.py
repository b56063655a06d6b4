"""AsyncAuditClient: the same retries, errors and idempotency as the sync client."""

from __future__ import annotations

import httpx
import pytest
from mock_server import MockServer, field_error, make_event, problem

from audit_ingest_sdk import (
    AsyncAuditClient,
    AuthenticationError,
    RateLimitedError,
    TransportError,
    ValidationError,
)


async def test_send_retries_429_and_503_after_retry_after_with_one_key(
    async_client: AsyncAuditClient, server: MockServer, sleeps: list[float]
) -> None:
    server.answer(problem(429, retry_after="4"), problem(503, retry_after="1"))
    accepted = await async_client.send(make_event())
    assert accepted.event_id
    assert sleeps == [4.0, 1.0]
    assert len(server.seen) == 3
    assert len({seen.headers["idempotency-key"] for seen in server.seen}) == 1


async def test_network_errors_are_retried(
    async_client: AsyncAuditClient, server: MockServer, sleeps: list[float]
) -> None:
    server.answer(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"))
    await async_client.send(make_event())
    assert len(server.seen) == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize(("status", "kind"), [(400, ValidationError), (401, AuthenticationError)])
async def test_client_errors_are_not_retried(
    async_client: AsyncAuditClient,
    server: MockServer,
    sleeps: list[float],
    status: int,
    kind: type,
) -> None:
    server.answer(problem(status, request_id="req-async"))
    with pytest.raises(kind) as raised:
        await async_client.send(make_event())
    assert raised.value.request_id == "req-async"
    assert len(server.seen) == 1
    assert sleeps == []


async def test_retries_exhausted(server: MockServer) -> None:
    waited: list[float] = []

    async def record(seconds: float) -> None:
        waited.append(seconds)

    http = httpx.AsyncClient(transport=httpx.MockTransport(server.handler))
    client = AsyncAuditClient("aik_test", "http://x", http_client=http, max_retries=1, sleep=record)
    server.answer(problem(429, retry_after="2"), problem(429, retry_after="5"))
    with pytest.raises(RateLimitedError) as raised:
        await client.send(make_event())
    assert (raised.value.retry_after, raised.value.attempts) == (5.0, 2)
    assert waited == [2.0]
    server.answer(httpx.ConnectError("down"), httpx.ConnectError("down"))
    with pytest.raises(TransportError):
        await client.send(make_event())
    await client.close()


async def test_send_batch_resends_unacknowledged_events_with_their_keys(
    async_client: AsyncAuditClient, server: MockServer
) -> None:
    unavailable = [field_error("", "sink_unavailable")]
    server.answer(problem(503, retry_after="1"), server.rejecting({0: unavailable}))
    result = await async_client.send_batch([make_event(i) for i in range(3)])
    first, second, third = server.batch_keys()
    assert first == second
    assert third == [first[0]]
    assert (result.accepted, result.rejected) == (3, 0)


async def test_gzip_is_applied_by_the_async_client_too(server: MockServer) -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(server.handler))
    async with AsyncAuditClient("aik_test", "http://x", http_client=http, gzip=True) as client:
        await client.send(make_event(context={"blob": "z" * 2000}))
    assert server.seen[0].headers["content-encoding"] == "gzip"


async def test_an_all_invalid_batch_gives_a_batch_result_as_the_sync_client(
    async_client: AsyncAuditClient, server: MockServer
) -> None:
    server.answer(problem(400, errors=[field_error("events[0].actor.id", "type")]))
    with pytest.raises(ValidationError) as raised:
        await async_client.send_batch([make_event()])
    result = raised.value.batch_result
    assert result is not None
    assert (result.accepted, result.rejected) == (0, 1)
    (item,) = result.rejected_items
    assert [(e.field, e.code) for e in item.errors] == [("actor.id", "type")]
    assert item.idempotency_key == server.batch_keys()[0][0]


async def test_duplicates_are_marked_as_by_the_sync_client(
    async_client: AsyncAuditClient, server: MockServer
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        response = server.accept(request)
        body = response.json()
        body["events"][0]["duplicate"] = True
        return httpx.Response(202, json=body)

    server.answer(answer)
    result = await async_client.send_batch([make_event(0), make_event(1)])
    assert [item.duplicate for item in result.items] == [True, False]
