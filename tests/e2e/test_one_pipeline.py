"""End to end: the three behaviours the per-event pipeline got wrong when it had copies.

- event ids of a full batch are in order and never carry a time ahead of the clock;
- an idempotency key repeated inside one batch is settled inside the request (no stall, no
  `sink_unavailable`), as is a repeated CloudEvent source + id;
- one 400 names every failing field, the timestamp among the schema errors.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from audit_ingest.settings import Settings
from tests.stack import KeyFactory, TopicReader
from tests.unit.samples import seed_event

pytestmark = pytest.mark.e2e
Reader = Callable[[str], TopicReader]
# Far below the 11 s a repeated key used to stall for (the delivery timeout): a request that
# waits on its own claim fails here instead of passing slowly.
REQUEST_TIMEOUT = 5.0


def post(url: str, body: Any, key: str, content_type: str = "application/json") -> httpx.Response:
    return httpx.post(
        url,
        content=orjson.dumps(body),
        headers={"content-type": content_type, "x-api-key": key},
        timeout=REQUEST_TIMEOUT,
    )


def records_of(reader: TopicReader, tenant: bytes, count: int) -> list[dict[str, Any]]:
    messages = reader.read_until(lambda seen: sum(m.key() == tenant for m in seen) >= count)
    return [orjson.loads(m.value() or b"") for m in messages if m.key() == tenant]


def test_a_full_batch_gets_ordered_ids_that_are_not_ahead_of_the_clock(
    batch_url: str, issue_key: KeyFactory, settings: Settings, read_topic: Reader
) -> None:
    issued = issue_key()
    events = [seed_event(resource={"type": "doc", "id": str(n)}) for n in range(1000)]
    response = post(f"{batch_url}/v1/events/batch", {"events": events}, issued.secret)
    answered_ms = time.time_ns() // 1_000_000
    assert response.status_code == 202, response.text
    ids = [item["event_id"] for item in response.json()["events"]]
    values = [uuid.UUID(event_id).int for event_id in ids]
    assert values == sorted(values) and len(set(values)) == 1000, "ids not strictly in order"
    lead = max(value >> 80 for value in values) - answered_ms
    assert lead <= 1, f"an id carries a time {lead} ms after the answer was received"
    stored = records_of(read_topic(settings.kafka_topic), issued.stored.tenant_id.encode(), 1000)
    assert {record["event_id"] for record in stored} == set(ids)


def test_a_key_repeated_in_one_batch_is_settled_in_the_request(
    batch_url: str, issue_key: KeyFactory, settings: Settings, read_topic: Reader
) -> None:
    issued = issue_key()
    event = seed_event(idempotency_key="order-7")
    other = seed_event(idempotency_key="order-7", resource={"type": "doc", "id": "other"})
    fresh = seed_event(idempotency_key="order-8")
    response = post(
        f"{batch_url}/v1/events/batch", {"events": [event, event, other, fresh]}, issued.secret
    )
    assert response.status_code == 202, response.text
    first, repeat, reused, new = response.json()["events"]
    assert first["status"] == "accepted" and "duplicate" not in first
    assert repeat == {
        "index": 1,
        "event_id": first["event_id"],
        "status": "accepted",
        "duplicate": True,
    }
    assert reused["status"] == "rejected"
    assert [e["code"] for e in reused["errors"]] == ["idempotency_key_reused"]
    assert new["status"] == "accepted" and new["event_id"] != first["event_id"]
    stored = records_of(read_topic(settings.kafka_topic), issued.stored.tenant_id.encode(), 2)
    assert sorted(r["event_id"] for r in stored) == sorted([first["event_id"], new["event_id"]])
    # A retry of the whole batch later is a retry of each stored event.
    again = post(f"{batch_url}/v1/events/batch", {"events": [event, fresh]}, issued.secret)
    assert [(i["event_id"], i.get("duplicate")) for i in again.json()["events"]] == [
        (first["event_id"], True),
        (new["event_id"], True),
    ]


def test_a_cloudevent_repeated_in_one_batch_is_one_event(
    batch_url: str, issue_key: KeyFactory
) -> None:
    issued = issue_key()
    cloudevent = {
        "specversion": "1.0",
        "id": "ce-42",
        "source": "/crm",
        "type": "com.example.audit",
        "data": seed_event(),
    }
    response = post(
        f"{batch_url}/v1/events/batch",
        [cloudevent, cloudevent],
        issued.secret,
        content_type="application/cloudevents-batch+json",
    )
    assert response.status_code == 202, response.text
    first, repeat = response.json()["events"]
    assert repeat["event_id"] == first["event_id"] and repeat.get("duplicate") is True


def test_one_answer_names_every_failing_field(single_url: str, issue_key: KeyFactory) -> None:
    issued = issue_key()
    event = seed_event(result={"success": "maybe"}, timestamp="yesterday", tenant_id="other")
    del event["resource"]
    response = post(f"{single_url}/v1/events", event, issued.secret)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    found = {(e["field"], e["code"]) for e in response.json()["errors"]}
    assert found == {
        ("result.success", "type"),
        ("timestamp", "invalid_timestamp"),
        ("tenant_id", "tenant_mismatch"),
        ("resource", "required"),
    }
