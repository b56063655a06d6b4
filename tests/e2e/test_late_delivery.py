"""A record that outlives its request: 503, then it lands once, and the retry learns its id.

The function waits 2 s for an acknowledgement (`KAFKA_DELIVERY_TIMEOUT_MS` 1 s + 1 s), but its
producer keeps a record for `KAFKA_MESSAGE_TIMEOUT_MS` (60 s by default). The broker is
stopped, one keyed event is sent (503: nothing acknowledged it in time), a retry during the
outage is told 503 again without writing anything, the broker returns and the first attempt's
record lands. The retry after that gets that record's `event_id` (202, a duplicate) and the
topic holds exactly one copy. With the producer as short-lived as the request (the setting
before this change), the record is dropped instead and the retry writes it: one copy too, but
only because the first was lost; the fault runs showed what a message timeout in flight costs
(the idempotent producer's epoch bump, then copies under one 202).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from devstack import LocalStack

from audit_ingest.settings import Settings
from tests.e2e.client import marked, post
from tests.e2e.outage import restored_broker, wait_ready
from tests.functions import FunctionProcess, start_function, stop_function
from tests.stack import KeyFactory, TopicReader
from tests.unit.samples import seed_event

pytestmark = pytest.mark.e2e

REQUEST_WAIT_MS = "1000"  # the handler answers 503 after this + 1 s


def test_a_record_that_outlives_its_request_lands_once_and_the_retry_gets_its_id(
    stack: LocalStack,
    function_env: dict[str, str],
    log_dir: Path,
    functions: dict[str, FunctionProcess],
    issue_key: KeyFactory,
    read_topic: Callable[[str], TopicReader],
    settings: Settings,
) -> None:
    env = {
        **function_env,
        "K_SERVICE": "ingest-event-late-delivery",
        "KAFKA_DELIVERY_TIMEOUT_MS": REQUEST_WAIT_MS,
    }
    single = start_function("ingest_event", env, log_dir)
    tenant = uuid.uuid4()
    issued = issue_key(tenant_id=tenant)
    marker = uuid.uuid4().hex
    event = seed_event(context={"marker": marker})
    url = f"{single.url}/v1/events"
    headers = {"idempotency-key": f"late-{marker}"}
    try:
        # Warm the producer (connections, metadata) so the outage catches a live producer.
        warm = post(url, seed_event(), issued.secret)
        assert warm.status_code == 202, warm.text
        with restored_broker(stack, functions):
            stack.kafka.stop()
            first = post(url, event, issued.secret, **headers)
            assert first.status_code == 503, first.text
            assert first.headers.get("retry-after")
            during = post(url, event, issued.secret, **headers)
            assert during.status_code == 503, during.text  # waits on the held claim
            stack.kafka.start()
            wait_ready(single.url)
        topic = read_topic(settings.kafka_topic)
        key = str(tenant).encode()

        landed = marked(
            topic.read_until(lambda seen: bool(marked(seen, key, marker)), 60), key, marker
        )
        assert len(landed) == 1, single.output()[-3000:]
        stored_id = orjson.loads(landed[0].value())["event_id"]
        # The late report settles the claim on the function's loop, just after the record.
        deadline = time.monotonic() + 10
        while True:
            retry = post(url, event, issued.secret, **headers)
            if retry.status_code == 202 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert retry.status_code == 202, retry.text
        assert retry.json()["event_id"] == stored_id
        time.sleep(2)  # anything the retry might have written would be read by now
        assert len(marked(topic.drain(), key, marker)) == 1
    finally:
        stop_function(single)
