"""SIGTERM under load loses nothing: every event answered 202 is in Kafka afterwards.

Knative sends SIGTERM when it scales a revision down (to zero, too). The function must stop
accepting, finish the requests in flight (each waits for its broker acknowledgement), flush
the producer and exit 0; a 202 is a promise that the record is stored, so each one is read
back from the topic by its event_id.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from confluent_kafka import Message

from audit_ingest.settings import Settings
from tests.functions import start_function, stop_function
from tests.stack import KeyFactory, TopicReader
from tests.unit.samples import seed_event

pytestmark = pytest.mark.e2e


class EventIds:
    """The event_ids of a growing list of records, parsed once each."""

    def __init__(self) -> None:
        self.found: set[str] = set()
        self._parsed = 0

    def update(self, messages: list[Message]) -> set[str]:
        for message in messages[self._parsed :]:
            value = message.value()
            if value:
                self.found.add(orjson.loads(value)["event_id"])
        self._parsed = len(messages)
        return self.found


def test_every_202_before_sigterm_is_in_kafka(
    function_env: dict[str, str],
    log_dir: Path,
    issue_key: KeyFactory,
    settings: Settings,
    read_topic: Callable[[str], TopicReader],
) -> None:
    function = start_function(
        "ingest_event", {**function_env, "K_SERVICE": "sigterm-kafka"}, log_dir
    )
    key = issue_key().secret
    accepted: list[str] = []
    statuses: list[int] = []
    errors: list[str] = []
    raced: list[tuple[int, int]] = []  # requests closed or reset without an answer
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(timeout=30) as client:
            n = 0
            while not stop.is_set():
                n += 1
                event = seed_event()
                event["metadata"] = {"sigterm_worker": worker, "n": n}
                try:
                    response = client.post(
                        f"{function.url}/v1/events",
                        content=orjson.dumps(event),
                        headers={"content-type": "application/json", "x-api-key": key},
                    )
                except httpx.ConnectError:  # refused: the listener closed; nothing was sent
                    return
                except (httpx.RemoteProtocolError, httpx.ReadError):
                    # The server closed an idle keep-alive connection as this request went out
                    # (the keep-alive race: closed, or reset when the request was left unread;
                    # test_lifecycle.py covers answers). Not answered, so not acknowledged; it
                    # must not have been processed either, which the topic shows below.
                    raced.append((worker, n))
                    return
                except httpx.TransportError as exc:  # a timeout or reset mid-answer: a defect
                    errors.append(repr(exc))
                    return
                statuses.append(response.status_code)
                if response.status_code == 202:
                    accepted.append(response.json()["event_id"])

    workers = [threading.Thread(target=load, args=(i,)) for i in range(6)]
    for worker in workers:
        worker.start()
    while len(accepted) < 100 and not errors:
        threading.Event().wait(0.01)
    code = stop_function(function)
    stop.set()
    for worker in workers:
        worker.join(30)

    assert code == 0, function.output()
    assert errors == [], errors
    assert set(statuses) == {202}, set(statuses)
    assert len(accepted) == len(set(accepted)) >= 100
    reader = read_topic(settings.kafka_topic)
    wanted, ids = set(accepted), EventIds()
    messages = reader.read_until(lambda seen: wanted <= ids.update(seen), timeout=60)
    missing = wanted - ids.update(messages)
    assert not missing, f"{len(missing)} of {len(wanted)} acknowledged events are not in Kafka"
    # A request the server closed without an answer was never processed (a drain that cut an
    # answer after storing the event would show here).
    stored = {
        (value["metadata"]["sigterm_worker"], value["metadata"]["n"])
        for value in (orjson.loads(m.value() or b"") for m in messages if m.value())
        if "sigterm_worker" in (value.get("metadata") or {})
    }
    assert not stored & set(raced), "a request closed without an answer was processed"
