"""A function killed while it holds a claim: the client's retry takes the claim over, same id.

A keyed event's claim names the `event_id` its record is produced under. When the function is
killed before it settles the claim, the record may or may not have been written (here: the
broker is down, so it was not). Past the claim's deadline (`KAFKA_DELIVERY_TIMEOUT_MS` + 5 s
from the claim) the retry, through another function process, must take the claim over under
that `event_id`: had the killed process's record landed, the retry's copy would share its id,
and consumers that de-duplicate on `event_id` would see one event. Before claims carried their
deadline, the claim's key expired and the retry wrote its copy under a new `event_id`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from devstack import LocalStack
from prometheus_client.parser import text_string_to_metric_families

from audit_ingest.domain.idempotency import storage_key
from audit_ingest.settings import Settings
from tests.e2e.client import marked, post
from tests.e2e.outage import restored_broker, wait_ready
from tests.functions import FunctionProcess, kill_function, start_function, stop_function
from tests.stack import KeyFactory, TopicReader
from tests.unit.samples import seed_event

pytestmark = pytest.mark.e2e

DELIVERY_TIMEOUT_MS = "1000"  # the claim's deadline: 1 s + 5 s after it is made


def test_a_killed_functions_claim_passes_to_the_retry_under_its_event_id(
    stack: LocalStack,
    stack_env: dict[str, str],
    function_env: dict[str, str],
    log_dir: Path,
    functions: dict[str, FunctionProcess],
    issue_key: KeyFactory,
    read_topic: Callable[[str], TopicReader],
    settings: Settings,
) -> None:
    env = {
        **function_env,
        "K_SERVICE": "ingest-event-killed-claim",
        "KAFKA_DELIVERY_TIMEOUT_MS": DELIVERY_TIMEOUT_MS,
    }
    doomed = start_function("ingest_event", env, log_dir)
    tenant = uuid.uuid4()
    issued = issue_key(tenant_id=tenant)
    marker = uuid.uuid4().hex
    event = seed_event(context={"marker": marker})
    retry_key = f"killed-{marker}"
    headers = {"idempotency-key": retry_key}
    store = redis.Redis.from_url(stack_env["REDIS_URL"], decode_responses=True)
    claim_key = storage_key(str(tenant), f"key:{retry_key}")
    try:
        warm = post(f"{doomed.url}/v1/events", seed_event(), issued.secret)
        assert warm.status_code == 202, warm.text
        with restored_broker(stack, functions), ThreadPoolExecutor(1) as pool:
            stack.kafka.stop()
            answer = pool.submit(post, f"{doomed.url}/v1/events", event, issued.secret, **headers)
            deadline = time.monotonic() + 10
            while (claim := store.get(claim_key)) is None:
                assert time.monotonic() < deadline, "the function never claimed the key"
                assert not answer.done(), answer.result().text
                time.sleep(0.005)
            kill_function(doomed)  # before the producer's report: the claim stays pending
            assert isinstance(answer.exception(timeout=20), httpx.TransportError)
        status, claimed_id = str(claim).split("|")[:2]
        assert status == "pending"
        wait_ready(functions["single"].url)

        # The client retries through the surviving function until it is answered 202: 503
        # (in progress) while the dead owner's claim is inside its deadline, then a takeover.
        url = f"{functions['single'].url}/v1/events"
        resumed = _resumed(functions["single"].url)
        deadline = time.monotonic() + 40
        while True:
            retry = post(url, event, issued.secret, **headers)
            if retry.status_code == 202 or time.monotonic() > deadline:
                break
            assert retry.status_code == 503, retry.text
            time.sleep(0.5)
        assert retry.status_code == 202, retry.text
        assert retry.json()["event_id"] == claimed_id
        assert _resumed(functions["single"].url) == resumed + 1  # and operators can see it

        topic = read_topic(settings.kafka_topic)
        key = str(tenant).encode()

        landed = marked(
            topic.read_until(lambda seen: bool(marked(seen, key, marker)), 60), key, marker
        )
        assert [orjson.loads(m.value())["event_id"] for m in landed] == [claimed_id]
        again = post(url, event, issued.secret, **headers)  # settled: the stored answer
        assert again.status_code == 202 and again.json() == retry.json()
        time.sleep(2)  # anything a retry might have written would be read by now
        assert len(marked(topic.drain(), key, marker)) == 1
    finally:
        store.close()
        if doomed.process.poll() is None:
            stop_function(doomed)


def _resumed(url: str) -> float:
    """The function's count of retries written under an earlier attempt's event_id."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "audit_ingest_idempotency_total" and sample.labels == {
                "result": "resumed"
            }:
                return sample.value
    return 0.0
