"""The SDK's spool against the real stack: 20,000 events, the broker down for 30 s, and the
producer process killed with SIGKILL halfway; every event must end up in the topic once.

Timeline: producer A (tests/sdk/spool_producer.py) starts spooling events 0-9,999 while
the broker is up; the session's Kafka is stopped once A has spooled 2,000; A finishes
spooling during the outage and is `kill -9`ed while its spool still holds undelivered
events; producer B opens the same file (and so resumes A's leftovers), spools 10,000-19,999
and waits for its spool to drain; the broker starts again 30 s after it stopped. Then the
topic is read back: each of the 20,000 markers exactly once, under 20,000 distinct
idempotency keys and 20,000 distinct event ids. A resend of something the service already
stored (A's in-flight batch, the rows between a 202 and their delete) is de-duplicated by
its idempotency key, which the spool fixed when it took the event.

The broker is the session's own: the test restarts it in a `finally` and waits for the batch
function to be ready again, so the tests after it find the stack as it was.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Message
from devstack import LocalStack

from audit_ingest.settings import Settings
from audit_ingest_sdk import AuditClient, SpoolLockedError
from tests.functions import FunctionProcess
from tests.stack import REPO, KeyFactory, TopicReader

pytestmark = pytest.mark.e2e

PRODUCER = REPO / "tests" / "sdk" / "spool_producer.py"
TOTAL = 20_000
HALF = TOTAL // 2
OUTAGE_SECONDS = 30.0


class Producer:
    """A spool_producer.py process, its JSON lines collected by a thread."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.lines: list[dict[str, Any]] = []
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(PRODUCER), *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(json.loads(line))

    def spooled(self) -> int:
        return int((self.latest("spooled") or {}).get("spooled", 0))

    def first(self, name: str) -> dict[str, Any] | None:
        return next((line for line in self.lines if name in line), None)

    def latest(self, name: str) -> dict[str, Any] | None:
        return next((line for line in reversed(self.lines) if name in line), None)

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None and not condition():
                raise AssertionError(f"producer exited ({self.process.returncode}) before {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"producer: no {what} within {timeout} s: {self.lines[-3:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._reader.join(5)
        self._log.close()


def tenant_count_reaches(key: bytes, count: int) -> Callable[[list[Message]], bool]:
    """A `read_until` predicate that counts the tenant's records as they come (not from the
    start on every call: that is quadratic over 20,000 records)."""
    seen_so_far = [0, 0]  # messages looked at, the tenant's among them

    def reached(messages: list[Message]) -> bool:
        new = messages[seen_so_far[0] :]
        seen_so_far[0] = len(messages)
        seen_so_far[1] += sum(message.key() == key for message in new)
        return seen_so_far[1] >= count

    return reached


def extra_copies(records: list[dict[str, Any]]) -> str:
    """Which kind of duplicate: one event_id twice (an ambiguous write inside the service, the
    issue's "one 202, several copies") or one key under two event_ids (a resend not
    de-duplicated)."""
    ids = Counter(record["event_id"] for record in records)
    keys = Counter(record["idempotency_key"] for record in records)
    same_id = sum(n - 1 for n in ids.values() if n > 1)
    same_key = sum(n - 1 for n in keys.values() if n > 1)
    return f"{len(records) - TOTAL} extra: {same_id} repeat an event_id, {same_key} a key"


@contextmanager
def restored_broker(stack: LocalStack, batch: FunctionProcess) -> Iterator[None]:
    """Whatever happens in the block, the session's broker and the batch function are back."""
    try:
        yield
    finally:
        if not stack.kafka.is_running():
            stack.kafka.start()
        deadline = time.monotonic() + 60
        while httpx.get(f"{batch.url}/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the batch function is not ready again"
            time.sleep(0.2)


def test_20000_events_survive_a_broker_outage_and_a_kill_9_exactly_once(
    stack: LocalStack,
    functions: dict[str, FunctionProcess],
    issue_key: KeyFactory,
    settings: Settings,
    read_topic: Callable[[str], TopicReader],
    tmp_path: Path,
) -> None:
    if stack.kafka.external_url is not None:
        pytest.skip("the broker is an external one (KAFKA_BOOTSTRAP_SERVERS): not ours to stop")
    issued = issue_key()
    run = uuid.uuid4().hex
    spool = tmp_path / "producer.spool"
    common = [functions["batch"].url, issued.secret, str(spool), run]
    timings: dict[str, float] = {}
    began = time.monotonic()
    producers: list[Producer] = []
    with restored_broker(stack, functions["batch"]):
        first = Producer([*common, "0", str(HALF), "--hold"], tmp_path / "a.log")
        producers.append(first)
        first.wait_for(lambda: first.spooled() >= 2000, 30, "2000 spooled")
        # One client per file: this process is refused while the producer holds it.
        with pytest.raises(SpoolLockedError), AuditClient(issued.secret, "http://x") as other:
            other.spool(spool)

        stack.kafka.stop()
        down = time.monotonic()
        timings["broker stopped"] = down - began
        first.wait_for(lambda: first.first("sent") is not None, 60, "all sends")
        time.sleep(2)  # its sender is now waiting on a request the broker cannot serve
        before_kill = first.latest("pending") or {}
        first.stop()  # SIGKILL
        timings["A killed"] = time.monotonic() - began
        assert first.process.returncode == -9
        assert before_kill.get("pending", 0) > 0, before_kill  # undelivered events were on disk

        second = Producer([*common, str(HALF), str(TOTAL)], tmp_path / "b.log")
        producers.append(second)
        second.wait_for(lambda: second.first("resumed") is not None, 30, "open")
        resumed = (second.first("resumed") or {})["resumed"]
        assert resumed > 0  # A's leftovers, found in the file

        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down)))
        timings["broker down for"] = time.monotonic() - down
        stack.kafka.start()
        timings["broker back"] = time.monotonic() - began
        second.wait_for(lambda: second.process.poll() is not None, 90, "exit")
        timings["B drained"] = time.monotonic() - began
    for producer in producers:
        producer.stop()
    assert second.process.returncode == 0, second.lines[-3:]
    final = second.latest("flushed")
    assert final is not None
    assert (final["flushed"], final["pending"], final["dead"]) == (True, 0, 0)

    reader = read_topic(settings.kafka_topic)
    key = issued.stored.tenant_id.encode()
    reader.read_until(tenant_count_reaches(key, TOTAL), timeout=60)
    reader.drain(quiet=2.0)
    values = [m.value() for m in reader.messages if m.key() == key]
    records = [orjson.loads(value) for value in values if value is not None]
    timings["read back"] = time.monotonic() - began
    print(
        "spool outage (s):",
        {name: round(value, 1) for name, value in timings.items()},
        f"A pending at kill {before_kill.get('pending')}, B resumed {resumed}",
    )
    markers = sorted(record["context"]["marker"] for record in records)
    assert {record["context"]["run"] for record in records} == {run}
    missing = sorted(set(range(TOTAL)) - set(markers))
    assert missing == [], f"{len(missing)} events lost, first {missing[:10]}"
    assert len(records) == TOTAL, extra_copies(records)
    assert markers == list(range(TOTAL))
    assert len({record["idempotency_key"] for record in records}) == TOTAL
    assert len({record["event_id"] for record in records}) == TOTAL
