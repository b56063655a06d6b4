"""Dead letters survive a broker outage: the record of a rejected event waits for the brokers.

A batch function is started with the shortest delivery timeout (1 s), the broker is stopped,
a batch of invalid events is refused (400: the client's answer needs no broker), the outage
lasts several delivery timeouts, the broker comes back: every dead letter is in the DLQ topic.
With `KAFKA_DLQ_DELIVERY_TIMEOUT_MS` as short as the main timeout, the same outage loses them
all, which is what happened before dead letters had a producer of their own.
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
from tests.e2e.client import post
from tests.e2e.outage import restored_broker, wait_ready
from tests.functions import FunctionProcess, start_function, stop_function
from tests.stack import KeyFactory, TopicReader

EVENTS = 12
OUTAGE_S = 4.0  # four times the main producer's delivery timeout below
MAIN_TIMEOUT_MS = "1000"


def invalid_events(run: str) -> list[dict[str, object]]:
    # No actor: refused by validation, so each event's only record is its dead letter.
    return [
        {"action": {"name": "x.y"}, "resource": {"type": "t", "id": f"{run}-{i}"}}
        for i in range(EVENTS)
    ]


@pytest.mark.parametrize(
    ("dlq_timeout_ms", "kept"), [("0", EVENTS), (MAIN_TIMEOUT_MS, 0)], ids=["default", "short"]
)
def test_dead_letters_written_during_a_broker_outage_reach_the_topic_after_it(
    stack: LocalStack,
    function_env: dict[str, str],
    log_dir: Path,
    functions: dict[str, FunctionProcess],
    issue_key: KeyFactory,
    read_topic: Callable[[str], TopicReader],
    settings: Settings,
    dlq_timeout_ms: str,
    kept: int,
) -> None:
    env = {
        **function_env,
        "K_SERVICE": "ingest-batch-dlq-outage",
        "KAFKA_DELIVERY_TIMEOUT_MS": MAIN_TIMEOUT_MS,
        "KAFKA_DLQ_DELIVERY_TIMEOUT_MS": dlq_timeout_ms,
    }
    batch = start_function("ingest_batch", env, log_dir)
    tenant = uuid.uuid4()
    issued = issue_key(tenant_id=tenant)
    run = uuid.uuid4().hex[:8]
    try:
        with restored_broker(stack, functions):
            stack.kafka.stop()
            answer = post(
                f"{batch.url}/v1/events/batch", {"events": invalid_events(run)}, issued.secret
            )
            assert answer.status_code == 400, answer.text
            time.sleep(OUTAGE_S)
            stack.kafka.start()
            wait_ready(batch.url)
        dlq = read_topic(settings.kafka_dlq_topic)
        key = str(tenant).encode()
        if kept:
            mine = dlq.read_until(lambda seen: sum(m.key() == key for m in seen) >= kept, 60)
        else:
            time.sleep(5)  # as long as a delivery takes once the broker is back
            mine = dlq.drain()
        ids = sorted(
            orjson.loads(m.value() or b"")["resource"]["id"] for m in mine if m.key() == key
        )
        assert ids == sorted(f"{run}-{i}" for i in range(kept)), batch.output()[-2000:]
        if not kept:
            assert "dead-letter record to" in batch.output()  # each loss is logged
    finally:
        stop_function(batch)
