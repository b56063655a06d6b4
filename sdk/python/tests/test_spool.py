"""SpoolingClient: events on disk before `send` returns, removed only once stored, kept aside
when refused for good, resent with the same keys after failures, crashes and restarts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
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
    FailedEvent,
    QueueFullError,
    SpoolingClient,
    SpoolLockedError,
    SpoolStats,
)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def markers(batch: list[dict[str, Any]]) -> list[int]:
    return [event["context"]["marker"] for event in batch]


def sent_keys(server: MockServer) -> list[str]:
    return [key for batch in server.batch_keys() for key in batch]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "audit.spool"


@pytest.fixture
def blocked(server: MockServer) -> Iterator[threading.Event]:
    """The server holds every request until the event is set."""
    gate = threading.Event()
    server.gate = gate
    yield gate
    gate.set()


def fill(spool: SpoolingClient) -> int:
    """Send until the spool is full (no waiting); returns how many were taken."""
    count = 0
    while True:
        try:
            spool.send(make_event(count), timeout=0)
        except QueueFullError:
            return count
        count += 1


def unsent_spool(make_client: MakeClient, path: Path, **options: Any) -> SpoolingClient:
    """A spool whose batches never leave before `flush` (a long interval)."""
    client: AuditClient = make_client(max_retries=0)
    return client.spool(path, flush_interval=3600, **options)


def test_events_are_sent_in_batches_with_their_keys_and_then_forgotten(
    client: AuditClient, server: MockServer, path: Path
) -> None:
    with client.spool(path, max_batch_events=3, flush_interval=3600) as spool:
        keys = [spool.send(make_event(i)) for i in range(7)]
        given = spool.send(make_event(7, idempotency_key="mine-7"))
        assert spool.flush(timeout=5)
        stats = spool.stats()
    assert server.seen
    assert all(seen.path == "/v1/events/batch" for seen in server.seen)
    assert [markers(batch) for batch in server.batches()] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert sent_keys(server) == [*keys, given]
    assert given == "mine-7"
    assert len(set(keys)) == 7
    assert (stats.pending, stats.pending_bytes, stats.accepted, stats.spooled) == (0, 0, 8, 8)


def test_sends_are_on_disk_when_send_returns_and_a_restart_resumes(
    make_client: MakeClient, server: MockServer, path: Path, blocked: threading.Event
) -> None:
    first = unsent_spool(make_client, path)
    keys = [first.send(make_event(i)) for i in range(5)]
    assert first.stats().pending == 5
    first.close(timeout=0)  # nothing sent: the events stay in the file
    assert server.seen == []

    reopened = make_client().spool(path, flush_interval=3600)
    assert reopened.stats().pending == 5  # (its first request is held by the server)
    blocked.set()
    # Events found at open are due at once, without waiting for flush_interval.
    assert wait_until(lambda: reopened.stats().pending == 0)
    assert sent_keys(server) == keys
    assert markers(server.batches()[0]) == [0, 1, 2, 3, 4]
    reopened.close()


def test_a_full_spool_blocks_then_raises_and_never_drops(
    client: AuditClient, server: MockServer, path: Path, blocked: threading.Event
) -> None:
    spool = client.spool(path, max_bytes=2048, block_timeout=0.3, max_batch_events=1)
    count = fill(spool)  # (the sender is stuck on the held request)
    started = time.monotonic()
    with pytest.raises(QueueFullError, match="full"):
        spool.send(make_event(999))
    assert time.monotonic() - started >= 0.3  # it waited for room first
    assert spool.stats().spooled == count
    assert spool.stats().used_bytes <= 2048

    # Room made while a send waits: it goes through.
    outcome: list[str] = []
    waiting = threading.Thread(
        target=lambda: outcome.append(spool.send(make_event(1000), timeout=10))
    )
    waiting.start()
    time.sleep(0.2)
    assert outcome == []
    blocked.set()
    waiting.join(10)
    assert len(outcome) == 1
    assert spool.flush(timeout=5)
    spool.close()
    delivered = sorted(m for batch in server.batches() for m in markers(batch))
    assert delivered == [*range(count), 1000]


def test_the_byte_bound_holds_and_pressure_is_reported_once(
    make_client: MakeClient, path: Path
) -> None:
    pressure: list[SpoolStats] = []
    spool = unsent_spool(
        make_client, path, max_bytes=4096, block_timeout=0, on_pressure=pressure.append
    )
    refused = 0
    for i in range(100):
        try:
            spool.send(make_event(i, context={"marker": i, "pad": "p" * 100}))
        except QueueFullError:
            refused += 1
    stats = spool.stats()
    assert refused > 0
    assert stats.used_bytes <= 4096
    assert stats.used_bytes + stats.used_bytes // stats.pending > 4096  # one more: too much
    assert stats.spooled + refused == 100
    assert len(pressure) == 1
    assert 0.8 <= pressure[0].fill < 0.9
    spool.close(timeout=0)


def test_events_refused_for_good_go_to_the_dead_letters_with_the_reason(
    make_client: MakeClient, server: MockServer, path: Path
) -> None:
    reports: list[list[FailedEvent]] = []
    spool = unsent_spool(make_client, path, on_error=reports.append)
    server.answer(server.rejecting({1: [field_error("actor.id", "type")]}))
    keys = [spool.send(make_event(i)) for i in range(3)]
    assert spool.flush(timeout=5)
    stats = spool.stats()
    assert (stats.pending, stats.accepted, stats.rejected, stats.dead_letters) == (0, 2, 1, 1)
    assert stats.dead_letter_bytes > 0
    (letter,) = spool.dead_letters()
    assert letter.idempotency_key == keys[1]
    assert letter.event["context"]["marker"] == 1
    assert [(e.field, e.code) for e in letter.errors] == [("actor.id", "type")]
    assert letter.status == 202
    ((failed,),) = reports
    assert failed.idempotency_key == keys[1]

    # Kept aside, not lost: they can be sent again, with the same key.
    assert spool.requeue_dead_letters() == 1
    assert spool.flush(timeout=5)
    assert sent_keys(server)[-1] == keys[1]
    assert spool.stats().dead_letters == 0
    spool.close()


def test_an_all_invalid_batch_and_an_oversized_event_are_dead_letters(
    make_client: MakeClient, server: MockServer, path: Path
) -> None:
    spool = unsent_spool(make_client, path)
    server.answer(
        problem(400, errors=[field_error(f"events[{i}].actor.id", "type") for i in range(2)]),
        problem(413),  # the next batch of two: split in halves
        problem(413),  # ... and the first half alone is too large: refused for good
    )
    spool.send_many([make_event(0), make_event(1)])
    assert spool.flush(timeout=5)
    spool.send_many([make_event(2), make_event(3)])
    assert spool.flush(timeout=5)
    letters = spool.dead_letters()
    assert [letter.event["context"]["marker"] for letter in letters] == [0, 1, 2]
    assert [e.code for e in letters[2].errors] == ["payload_too_large"]
    assert letters[2].status == 413
    assert [markers(batch) for batch in server.batches()] == [[0, 1], [2, 3], [2], [3]]
    assert spool.stats().accepted == 1
    spool.close()


def test_retriable_failures_keep_the_events_and_honour_retry_after(
    make_client: MakeClient, server: MockServer, path: Path
) -> None:
    client: AuditClient = make_client(max_retries=0)
    spool = client.spool(path, flush_interval=3600, backoff=0.01, max_backoff=2)
    unavailable = [{"field": "", "message": "not acknowledged", "code": "sink_unavailable"}]
    server.answer(
        problem(503, retry_after="1"),
        httpx.ConnectError("refused"),
        server.rejecting({0: unavailable}),
        problem(401),  # the key, not the events: kept too
    )
    keys = [spool.send(make_event(i)) for i in range(3)]
    started = time.monotonic()
    assert spool.flush(timeout=10)
    stats = spool.stats()
    assert (stats.accepted, stats.rejected, stats.dead_letters, stats.pending) == (3, 0, 0, 0)
    assert stats.failed_rounds == 4
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was waited
    batches = server.batch_keys()
    assert batches[:3] == [keys, keys, keys]
    assert batches[3:] == [[keys[0]], [keys[0]]]  # only the unacknowledged one again
    spool.close()


def test_a_crash_between_send_and_delete_resends_under_the_same_key(
    make_client: MakeClient, server: MockServer, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Crash(BaseException):
        """Ends the sender thread the way a dying process would: nothing after it runs."""

    def stored_then_crash(request: httpx.Request) -> httpx.Response:
        server.accept(request)  # the server stored them...
        raise Crash  # ...and the client died before it could forget them

    crashes: list[type[BaseException]] = []
    monkeypatch.setattr(threading, "excepthook", lambda hook: crashes.append(hook.exc_type))
    server.answer(stored_then_crash)
    crashed = unsent_spool(make_client, path)
    keys = [crashed.send(make_event(i)) for i in range(3)]
    assert not crashed.flush(timeout=0.5)
    assert crashes == [Crash]
    crashed.close(timeout=0)

    restarted = make_client().spool(path)
    assert restarted.flush(timeout=5)
    first, again = server.batch_keys()
    assert first == again == keys
    assert [m for batch in server.batches() for m in markers(batch)] == [0, 1, 2] * 2
    restarted.close()


CHILD = """
import json, sys
from audit_ingest_sdk import AuditClient

# Nothing listens on port 9: every round fails, so everything spooled stays spooled.
client = AuditClient("aik_test", "http://127.0.0.1:9", max_retries=0)
spool = client.spool(sys.argv[1], max_batch_events=10, flush_interval=0.01)
keys = [spool.send({"actor": {"id": "a"}, "action": {"name": "x"},
                    "resource": {"type": "t", "id": str(i)}, "context": {"marker": i}})
        for i in range(50)]
print(json.dumps(keys), flush=True)
sys.stdin.read()  # until killed
"""


def test_kill_9_loses_nothing_spooled_and_the_file_is_locked_while_alive(
    make_client: MakeClient, server: MockServer, path: Path
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        keys = json.loads(child.stdout.readline())
        with pytest.raises(SpoolLockedError):  # another process holds it
            make_client().spool(path)
    finally:
        child.kill()  # SIGKILL: no atexit, no close, no flush
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    restarted = make_client().spool(path)
    assert restarted.flush(timeout=5)
    assert sent_keys(server) == keys
    assert sorted(m for batch in server.batches() for m in markers(batch)) == list(range(50))
    restarted.close()


def test_a_second_client_on_the_same_file_is_refused(make_client: MakeClient, path: Path) -> None:
    holder = unsent_spool(make_client, path)
    with pytest.raises(SpoolLockedError, match="in use"):
        make_client().spool(path)
    holder.close(timeout=0)
    make_client().spool(path).close()  # free again once closed


def test_many_threads_send_and_one_sender_delivers_each_event_once(
    client: AuditClient, server: MockServer, path: Path
) -> None:
    spool = client.spool(path, max_batch_events=50, flush_interval=0.05, durability="normal")

    def produce(offset: int) -> None:
        for i in range(200):
            spool.send(make_event(offset + i))

    threads = [threading.Thread(target=produce, args=(1000 * t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert spool.flush(timeout=10)
    spool.close()
    sent = [m for batch in server.batches() for m in markers(batch)]
    assert sorted(sent) == sorted(1000 * t + i for t in range(4) for i in range(200))
    assert len(set(sent_keys(server))) == 800


def test_closing_the_client_closes_its_spools(server: MockServer, path: Path) -> None:
    http = httpx.Client(transport=httpx.MockTransport(server.handler))
    with AuditClient("aik_test", "http://x", http_client=http) as client:
        client.spool(path, flush_interval=3600).send(make_event(1))
    assert [markers(batch) for batch in server.batches()] == [[1]]
    with AuditClient("aik_test", "http://x", http_client=http) as client:
        client.spool(path).close()  # the file is free again
