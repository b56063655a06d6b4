"""BatchingClient: flush triggers, bounded queue, close and exit flushes, failure reports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mock_server import MakeClient, MockServer, field_error, make_event, problem

from audit_ingest_sdk import (
    AuditClient,
    AuthenticationError,
    FailedEvent,
    QueueFullError,
    ServiceUnavailableError,
)

SRC = Path(__file__).resolve().parent.parent / "src"


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def markers(batch: list[dict[str, Any]]) -> list[int]:
    return [event["context"]["marker"] for event in batch]


def test_a_full_count_is_sent_at_once(client: AuditClient, server: MockServer) -> None:
    batcher = client.batcher(max_batch_events=10, flush_interval=60)
    for i in range(25):
        assert batcher.enqueue(make_event(i))
    assert wait_until(lambda: len(server.batches()) == 2)
    time.sleep(0.2)
    assert [len(batch) for batch in server.batches()] == [10, 10]
    assert batcher.stats().queued == 5
    batcher.close()
    assert [markers(batch) for batch in server.batches()] == [
        list(range(10)),
        list(range(10, 20)),
        list(range(20, 25)),
    ]
    stats = batcher.stats()
    assert (stats.enqueued, stats.accepted, stats.rejected, stats.batches) == (25, 25, 0, 3)


def test_a_full_byte_budget_is_sent_at_once(client: AuditClient, server: MockServer) -> None:
    batcher = client.batcher(max_batch_bytes=4096, max_batch_events=1000, flush_interval=60)
    for i in range(12):
        batcher.enqueue(make_event(i, context={"marker": i, "blob": "b" * 900}))
    assert wait_until(lambda: len(server.batches()) >= 2)
    batcher.close()
    sizes = [len(seen.raw) for seen in server.seen]
    assert all(size <= 4096 for size in sizes)
    assert max(sizes) > 3000  # batches are filled, not sent one by one
    assert sum(markers(batch) == sorted(markers(batch)) for batch in server.batches()) == len(sizes)
    assert sorted(m for batch in server.batches() for m in markers(batch)) == list(range(12))


def test_the_interval_sends_a_partial_batch(client: AuditClient, server: MockServer) -> None:
    batcher = client.batcher(max_batch_events=100, flush_interval=0.2)
    started = time.monotonic()
    for i in range(3):
        batcher.enqueue(make_event(i))
    assert wait_until(lambda: len(server.batches()) == 1, timeout=3)
    assert time.monotonic() - started >= 0.2
    assert markers(server.batches()[0]) == [0, 1, 2]
    batcher.close()


def test_flush_sends_now_and_waits_for_the_answer(client: AuditClient, server: MockServer) -> None:
    batcher = client.batcher(flush_interval=60)
    for i in range(5):
        batcher.enqueue(make_event(i))
    assert batcher.flush(timeout=5)
    assert [markers(batch) for batch in server.batches()] == [[0, 1, 2, 3, 4]]
    assert batcher.stats().accepted == 5
    assert batcher.flush(timeout=5)  # nothing new: returns at once
    batcher.close()


def test_close_sends_what_is_queued_and_refuses_more(
    client: AuditClient, server: MockServer
) -> None:
    batcher = client.batcher(flush_interval=60)
    for i in range(7):
        batcher.enqueue(make_event(i))
    batcher.close()
    assert [markers(batch) for batch in server.batches()] == [list(range(7))]
    with pytest.raises(RuntimeError, match="closed"):
        batcher.enqueue(make_event())


def test_closing_the_client_flushes_its_batchers(server: MockServer) -> None:
    http = httpx.Client(transport=httpx.MockTransport(server.handler))
    client = AuditClient("aik_test", "http://x", http_client=http)
    with client:
        client.batcher(flush_interval=60).enqueue(make_event(1))
        client.batcher(flush_interval=60).enqueue(make_event(2))
    assert sorted(markers(batch)[0] for batch in server.batches()) == [1, 2]


@pytest.fixture
def blocked(server: MockServer) -> Iterator[threading.Event]:
    """The server holds every request until the event is set."""
    gate = threading.Event()
    server.gate = gate
    yield gate
    gate.set()


def test_a_full_queue_drops_and_counts(
    client: AuditClient, server: MockServer, blocked: threading.Event
) -> None:
    batcher = client.batcher(
        max_batch_events=1, max_queue_size=5, flush_interval=0.01, overflow="drop"
    )
    assert batcher.enqueue(make_event(0))
    assert wait_until(lambda: batcher.stats().queued == 0)  # the worker holds it, blocked
    started = time.monotonic()
    results = [batcher.enqueue(make_event(i)) for i in range(1, 9)]
    assert time.monotonic() - started < 0.5  # enqueue never waits for the network
    assert results == [True] * 5 + [False] * 3
    assert batcher.stats().dropped == 3
    blocked.set()
    batcher.close()
    assert sorted(m for batch in server.batches() for m in markers(batch)) == list(range(6))
    stats = batcher.stats()
    assert (stats.enqueued, stats.accepted, stats.dropped) == (6, 6, 3)


def test_a_full_queue_raises_when_asked_to(client: AuditClient, blocked: threading.Event) -> None:
    batcher = client.batcher(
        max_batch_events=1, max_queue_size=2, flush_interval=0.01, overflow="raise"
    )
    batcher.enqueue(make_event(0))
    assert wait_until(lambda: batcher.stats().queued == 0)
    batcher.enqueue(make_event(1))
    batcher.enqueue(make_event(2))
    with pytest.raises(QueueFullError):
        batcher.enqueue(make_event(3))
    blocked.set()
    batcher.close()
    assert batcher.stats().accepted == 3


def test_a_full_queue_blocks_by_default_then_raises(
    client: AuditClient, server: MockServer, blocked: threading.Event
) -> None:
    batcher = client.batcher(
        max_batch_events=1, max_queue_size=2, flush_interval=0.01, block_timeout=0.3
    )
    assert batcher.options.overflow == "block"
    batcher.enqueue(make_event(0))
    assert wait_until(lambda: batcher.stats().queued == 0)  # the worker holds it, blocked
    batcher.enqueue(make_event(1))
    batcher.enqueue(make_event(2))
    started = time.monotonic()
    with pytest.raises(QueueFullError):
        batcher.enqueue(make_event(3))
    assert time.monotonic() - started >= 0.3  # it waited for room first
    blocked.set()
    batcher.close()
    assert sorted(m for batch in server.batches() for m in markers(batch)) == [0, 1, 2]
    assert batcher.stats().dropped == 0


def test_a_blocked_enqueue_goes_through_when_room_is_made(
    client: AuditClient, server: MockServer, blocked: threading.Event
) -> None:
    batcher = client.batcher(max_batch_events=1, max_queue_size=2, flush_interval=0.01)
    batcher.enqueue(make_event(0))
    assert wait_until(lambda: batcher.stats().queued == 0)
    batcher.enqueue(make_event(1))
    batcher.enqueue(make_event(2))
    outcome: list[bool] = []
    waiting = threading.Thread(target=lambda: outcome.append(batcher.enqueue(make_event(3))))
    waiting.start()
    time.sleep(0.2)
    assert outcome == []  # still waiting for room
    blocked.set()
    waiting.join(10)
    assert outcome == [True]
    batcher.close()
    assert sorted(m for batch in server.batches() for m in markers(batch)) == [0, 1, 2, 3]


def test_rejected_events_and_failed_batches_reach_on_error(
    client: AuditClient, server: MockServer
) -> None:
    reports: list[list[FailedEvent]] = []
    batcher = client.batcher(flush_interval=60, on_error=reports.append)
    server.answer(
        server.rejecting({1: [field_error("resource")]}),
        problem(400, errors=[field_error("events[1].actor.id", "type")]),
        problem(401),
    )
    for round_ in range(3):
        for i in range(2):
            batcher.enqueue(make_event(10 * round_ + i))
        batcher.flush()
    batcher.close()
    rejected, invalid, unauthenticated = reports
    (only,) = rejected
    assert only.event["context"]["marker"] == 1
    assert only.errors[0].field == "resource"
    assert only.error is None
    assert [f.event["context"]["marker"] for f in invalid] == [10, 11]
    assert invalid[0].errors == ()
    assert invalid[1].errors[0].field == "actor.id"
    assert all(isinstance(f.error, AuthenticationError) for f in unauthenticated)
    assert len(unauthenticated) == 2
    assert unauthenticated[0].idempotency_key == unauthenticated[0].event["idempotency_key"]
    stats = batcher.stats()
    assert (stats.accepted, stats.rejected) == (1, 5)


def test_retriable_failures_are_retried_with_the_same_keys(
    client: AuditClient, server: MockServer, sleeps: list[float]
) -> None:
    reports: list[list[FailedEvent]] = []
    batcher = client.batcher(flush_interval=60, on_error=reports.append)
    server.answer(problem(503, retry_after="1"), problem(429, retry_after="2"))
    for i in range(4):
        batcher.enqueue(make_event(i))
    batcher.close()
    first, second, third = server.batch_keys()
    assert first == second == third
    assert sleeps == [1.0, 2.0]
    assert reports == []
    assert batcher.stats().accepted == 4


def test_retries_exhausted_are_reported_with_keys_to_enqueue_again(
    make_client: MakeClient, server: MockServer, sleeps: list[float]
) -> None:
    client = make_client(max_retries=1)
    reports: list[list[FailedEvent]] = []
    batcher = client.batcher(flush_interval=60, on_error=reports.append)
    server.answer(problem(503, retry_after="1"), problem(503, retry_after="1"))
    batcher.enqueue(make_event(0))
    batcher.flush()
    ((failed,),) = reports
    assert isinstance(failed.error, ServiceUnavailableError)
    batcher.enqueue(failed.event)  # again, same key
    batcher.close()
    assert len({keys[0] for keys in server.batch_keys()}) == 1
    assert batcher.stats().accepted == 1


def test_a_413_splits_the_batch(client: AuditClient, server: MockServer) -> None:
    server.answer(problem(413))
    batcher = client.batcher(flush_interval=60)
    for i in range(4):
        batcher.enqueue(make_event(i))
    batcher.close()
    assert [markers(batch) for batch in server.batches()] == [[0, 1, 2, 3], [0, 1], [2, 3]]
    assert batcher.stats().accepted == 4


def test_an_event_too_big_for_any_batch_is_refused(client: AuditClient) -> None:
    batcher = client.batcher(max_batch_bytes=2048)
    with pytest.raises(ValueError, match="over max_batch_bytes"):
        batcher.enqueue(make_event(context={"blob": "x" * 3000}))
    batcher.close()


def test_concurrent_producers_deliver_every_event_once(
    client: AuditClient, server: MockServer
) -> None:
    batcher = client.batcher(max_batch_events=50, flush_interval=0.05)

    def produce(offset: int) -> None:
        for i in range(250):
            batcher.enqueue(make_event(offset + i))

    threads = [threading.Thread(target=produce, args=(1000 * t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    sent = [m for batch in server.batches() for m in markers(batch)]
    assert sorted(sent) == sorted(1000 * t + i for t in range(4) for i in range(250))
    assert all(len(batch) <= 50 for batch in server.batches())


def test_events_left_queued_are_sent_at_interpreter_exit(tmp_path: Path) -> None:
    script = tmp_path / "exit_flush.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, sys
            import httpx
            from audit_ingest_sdk import AuditClient

            def handler(request):
                events = json.loads(request.read())["events"]
                print("sent", len(events), flush=True)
                items = [{"index": i, "event_id": "e", "status": "accepted"}
                         for i in range(len(events))]
                return httpx.Response(202, json={"accepted": len(events), "rejected": 0,
                                                 "received_at": "x", "events": items})

            http = httpx.Client(transport=httpx.MockTransport(handler))
            client = AuditClient("aik_test", "http://x", http_client=http)
            batcher = client.batcher(flush_interval=3600)
            for i in range(3):
                batcher.enqueue({"actor": {"id": "a"}, "action": {"name": "x"},
                                 "resource": {"type": "t", "id": str(i)}})
            print("exiting", flush=True)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split("\n")[:2] == ["exiting", "sent 3"]
