"""AsyncSpoolingClient: the same spool from asyncio code, without blocking the loop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mock_server import MockServer, field_error, make_event, problem

from audit_ingest_sdk import AsyncAuditClient, AuditClient, QueueFullError, SpoolLockedError


def markers(batch: list[dict[str, Any]]) -> list[int]:
    return [event["context"]["marker"] for event in batch]


async def test_send_flush_and_close(
    async_client: AsyncAuditClient, server: MockServer, tmp_path: Path
) -> None:
    async with async_client.spool(tmp_path / "s", max_batch_events=4, flush_interval=3600) as sp:
        keys = [await sp.send(make_event(i)) for i in range(6)]
        keys += await sp.send_many([make_event(6), make_event(7)])
        assert await sp.flush(timeout=5)
        stats = sp.stats()
    assert [markers(batch) for batch in server.batches()] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [key for batch in server.batch_keys() for key in batch] == keys
    assert (stats.pending, stats.accepted) == (0, 8)


async def test_a_full_spool_awaits_room_without_blocking_the_loop_then_raises(
    async_client: AsyncAuditClient, tmp_path: Path
) -> None:
    spool = async_client.spool(tmp_path / "s", max_bytes=2048, flush_interval=3600)
    count = 0
    while True:  # fill it, without waiting
        try:
            await spool.send(make_event(count), timeout=0)
        except QueueFullError:
            break
        count += 1
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.get_running_loop().create_task(tick())
    started = time.monotonic()
    with pytest.raises(QueueFullError):
        await spool.send(make_event(999), timeout=0.3)
    assert time.monotonic() - started >= 0.3
    assert ticks >= 10  # the loop kept running while the send waited
    ticker.cancel()
    assert spool.stats().spooled == count
    await spool.close(timeout=0)


async def test_a_restart_resumes_and_refusals_are_dead_letters(
    async_client: AsyncAuditClient, server: MockServer, tmp_path: Path
) -> None:
    path = tmp_path / "s"
    offline = AuditClient("aik_test", "http://127.0.0.1:9", max_retries=0)
    first = offline.spool(path, flush_interval=3600)
    keys = [first.send(make_event(i)) for i in range(3)]
    first.close(timeout=0)
    offline.close()

    server.answer(server.rejecting({2: [field_error("resource.id", "too_long")]}))
    spool = async_client.spool(path)
    with pytest.raises(SpoolLockedError):
        async_client.spool(path)
    assert await spool.flush(timeout=5)
    assert server.batch_keys() == [keys]
    (letter,) = await spool.dead_letters()
    assert (letter.idempotency_key, letter.errors[0].code) == (keys[2], "too_long")
    assert await spool.purge_dead_letters() == 1
    assert spool.stats().used_bytes == 0
    await spool.close()


async def test_retriable_failures_are_kept_and_retried(server: MockServer, tmp_path: Path) -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(server.handler))
    server.answer(problem(503, retry_after="0"), problem(429, retry_after="0"))
    async with AsyncAuditClient("aik_test", "http://x", http_client=http, max_retries=0) as c:
        spool = c.spool(tmp_path / "s", flush_interval=3600)
        keys = [await spool.send(make_event(i)) for i in range(2)]
        assert await spool.flush(timeout=5)
        assert spool.stats().failed_rounds == 2
    # Closing the client closed the spool: the file is free.
    AuditClient("aik_test", "http://x").spool(tmp_path / "s").close()
    assert server.batch_keys() == [keys, keys, keys]
    await http.aclose()
