"""AsyncBatchingClient: the batcher as an asyncio task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from mock_server import MockServer, field_error, make_event, problem

from audit_ingest_sdk import AsyncAuditClient, FailedEvent, QueueFullError


def markers(batch: list[dict[str, Any]]) -> list[int]:
    return [event["context"]["marker"] for event in batch]


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_count_triggers_a_batch_and_close_sends_the_rest(
    async_client: AsyncAuditClient, server: MockServer
) -> None:
    batcher = async_client.batcher(max_batch_events=10, flush_interval=60)
    for i in range(23):
        assert batcher.enqueue(make_event(i))
    assert await wait_until(lambda: len(server.batches()) == 2)
    await asyncio.sleep(0.1)
    assert len(server.batches()) == 2
    await batcher.close()
    assert [len(batch) for batch in server.batches()] == [10, 10, 3]
    assert [m for batch in server.batches() for m in markers(batch)] == list(range(23))
    with pytest.raises(RuntimeError, match="closed"):
        batcher.enqueue(make_event())


async def test_interval_and_flush(async_client: AsyncAuditClient, server: MockServer) -> None:
    batcher = async_client.batcher(flush_interval=0.2)
    started = time.monotonic()
    batcher.enqueue(make_event(0))
    assert await wait_until(lambda: len(server.batches()) == 1, timeout=3)
    assert time.monotonic() - started >= 0.2
    slow = async_client.batcher(flush_interval=60)
    slow.enqueue(make_event(1))
    slow.enqueue(make_event(2))
    await slow.flush()
    assert markers(server.batches()[1]) == [1, 2]
    assert slow.stats().accepted == 2
    await batcher.close()
    await slow.close()


async def test_overflow_drops_or_raises(async_client: AsyncAuditClient) -> None:
    # Nothing runs until the test yields to the loop, so the queue fills synchronously.
    dropping = async_client.batcher(
        max_batch_events=1, max_queue_size=3, flush_interval=60, overflow="drop"
    )
    assert [dropping.enqueue(make_event(i)) for i in range(5)] == [True] * 3 + [False] * 2
    assert dropping.stats().dropped == 2
    raising = async_client.batcher(max_queue_size=1, overflow="raise")
    raising.enqueue(make_event(0))
    with pytest.raises(QueueFullError):
        raising.enqueue(make_event(1))
    await dropping.close()
    await raising.close()
    assert dropping.stats().accepted == 3


async def test_the_async_batcher_raises_by_default_and_cannot_block(
    async_client: AsyncAuditClient,
) -> None:
    batcher = async_client.batcher(max_queue_size=1, flush_interval=60)
    assert batcher.options.overflow == "raise"
    batcher.enqueue(make_event(0))
    with pytest.raises(QueueFullError):
        batcher.enqueue(make_event(1))
    assert batcher.stats().dropped == 0
    with pytest.raises(ValueError, match="event loop"):
        async_client.batcher(overflow="block")
    await batcher.close()
    assert batcher.stats().accepted == 1


async def test_failures_are_reported_and_retries_keep_keys(
    async_client: AsyncAuditClient, server: MockServer, sleeps: list[float]
) -> None:
    reports: list[list[FailedEvent]] = []
    batcher = async_client.batcher(flush_interval=60, on_error=reports.append)
    server.answer(problem(503, retry_after="1"), server.rejecting({0: [field_error("actor.id")]}))
    batcher.enqueue(make_event(0))
    batcher.enqueue(make_event(1))
    await batcher.flush()
    first, second = server.batch_keys()
    assert first == second
    assert sleeps == [1.0]
    ((failed,),) = reports
    assert failed.event["context"]["marker"] == 0
    assert failed.errors[0].field == "actor.id"
    await batcher.close()


async def test_closing_the_client_flushes_its_batchers(server: MockServer) -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(server.handler))
    async with AsyncAuditClient("aik_test", "http://x", http_client=http) as client:
        client.batcher(flush_interval=60).enqueue(make_event(5))
    assert [markers(batch) for batch in server.batches()] == [[5]]


def test_enqueue_outside_an_event_loop_is_refused(server: MockServer) -> None:
    client = AsyncAuditClient("aik_test", "http://x")
    batcher = client.batcher()
    for _ in range(2):
        with pytest.raises(RuntimeError, match="from a running event loop"):
            batcher.enqueue(make_event())
    assert batcher.stats().enqueued == 0
    asyncio.run(client.close())
