"""A function process under SIGTERM: in-flight requests answered, producer flushed, every
access line written (they go out once per event-loop turn), exit 0.

Under keep-alive, a request can race the server closing an idle connection: it leaves the
client as the server hangs up, and the client sees the connection closed (or reset, when the
request's bytes arrived unread) without an answer.
Such a request was never read, so it was never processed: the test proves exactly that by
looking for it in the topic. A request the server read and did not answer would be a defect.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from audit_ingest.settings import Settings
from tests.functions import start_function, stop_function
from tests.stack import KeyFactory, TopicReader
from tests.unit.samples import seed_event

pytestmark = pytest.mark.e2e


def test_sigterm_drains_and_exits_zero(
    function_env: dict[str, str], log_dir: Path, issue_key: KeyFactory, settings: Settings
) -> None:
    function = start_function(
        "ingest_event", {**function_env, "K_SERVICE": "sigterm", "LOG_LEVEL": "INFO"}, log_dir
    )
    issued = issue_key()
    statuses: list[int] = []
    raced: list[str] = []  # markers of requests closed without an answer
    errors: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=20) as client:
            while not stop.is_set():
                marker = str(uuid.uuid4())
                event = seed_event(context={"marker": marker})
                try:
                    response = client.post(
                        f"{function.url}/v1/events",
                        content=orjson.dumps(event),
                        headers={"content-type": "application/json", "x-api-key": issued.secret},
                    )
                    statuses.append(response.status_code)
                except httpx.ConnectError:  # refused: the listener closed; nothing was sent
                    return
                except (httpx.RemoteProtocolError, httpx.ReadError):
                    # Closed (or reset: the server closed a socket with the request unread)
                    # without an answer: checked below never to have been processed.
                    raced.append(marker)
                    return
                except httpx.TransportError as exc:  # a timeout or reset mid-answer: a defect
                    errors.append(repr(exc))
                    return

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    while len(statuses) < 50:
        threading.Event().wait(0.01)
    code = stop_function(function)
    stop.set()
    for worker in workers:
        worker.join(30)
    assert code == 0, function.output()
    assert statuses and set(statuses) == {202}, set(statuses)
    assert errors == [], errors
    output = function.output()
    assert "undelivered" not in output
    # The turn's lines wait for its end (logs.TurnFlushedHandler): none may be left unwritten.
    lines = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [
        line["status"]
        for line in lines
        if line.get("logger") == "audit_ingest.access" and line.get("path") == "/v1/events"
    ]
    assert sorted(access) == sorted(statuses), (len(access), len(statuses))

    reader = TopicReader(settings.kafka_bootstrap_servers, settings.kafka_topic)
    try:
        tenant = issued.stored.tenant_id.encode()
        reader.read_until(lambda seen: sum(m.key() == tenant for m in seen) >= len(statuses))
        stored = [orjson.loads(m.value() or b"") for m in reader.drain() if m.key() == tenant]
    finally:
        reader.close()
    assert len(stored) == len(statuses)  # every 202 stored, nothing else
    markers = {value["context"]["marker"] for value in stored}
    assert not markers & set(raced), "a request closed without an answer was processed"
