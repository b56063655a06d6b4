"""Retries over HTTP against the real stack: one record per event, the original event_id."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from audit_ingest.settings import Settings
from tests.e2e.client import find, post
from tests.stack import KeyFactory, TopicReader
from tests.unit.samples import seed_event

pytestmark = pytest.mark.e2e


def test_idempotency_key_header_and_concurrent_duplicates(
    single_url: str, issue_key: KeyFactory, settings: Settings
) -> None:
    issued = issue_key()
    url = f"{single_url}/v1/events"
    first = post(url, seed_event(), issued.secret, **{"idempotency-key": "order-1"})
    assert first.status_code == 202
    retry = post(url, seed_event(), issued.secret, **{"idempotency-key": "order-1"})
    assert retry.status_code == 202
    assert retry.json() == first.json()  # same event_id and received_at

    with ThreadPoolExecutor(8) as pool:
        racing = list(
            pool.map(
                lambda _: post(url, seed_event(), issued.secret, **{"idempotency-key": "order-2"}),
                range(8),
            )
        )
    assert {r.status_code for r in racing} == {202}
    assert len({r.json()["event_id"] for r in racing}) == 1

    reused = post(
        url, seed_event(actor={"id": "other"}), issued.secret, **{"idempotency-key": "order-1"}
    )
    assert reused.status_code == 400
    assert reused.json()["errors"][0]["code"] == "idempotency_key_reused"

    reader = TopicReader(settings.kafka_bootstrap_servers, settings.kafka_topic)
    try:
        find(reader, issued.stored.tenant_id.encode(), 2)
        records = [m for m in reader.drain() if m.key() == issued.stored.tenant_id.encode()]
    finally:
        reader.close()
    stored_ids = [orjson.loads(m.value() or b"")["event_id"] for m in records]
    assert sorted(stored_ids) == sorted([first.json()["event_id"], racing[0].json()["event_id"]])


def test_batch_keys_and_cloudevent_ids(
    batch_url: str, single_url: str, issue_key: KeyFactory, settings: Settings
) -> None:
    issued = issue_key()
    batch = {"events": [seed_event(idempotency_key=f"b-{i}") for i in range(3)]}
    first = post(f"{batch_url}/v1/events/batch", batch, issued.secret)
    again = post(f"{batch_url}/v1/events/batch", batch, issued.secret)
    assert first.status_code == again.status_code == 202
    # The retry answers with the stored events, each marked a duplicate (nothing new stored).
    assert [{**item, "duplicate": True} for item in first.json()["events"]] == again.json()[
        "events"
    ]

    cloudevent = {
        "specversion": "1.0",
        "id": "crm-77",
        "source": "/crm",
        "type": "com.crm.x",
        "data": seed_event(),
    }
    ce_first = post(
        f"{single_url}/v1/events", cloudevent, issued.secret, "application/cloudevents+json"
    )
    ce_again = post(
        f"{single_url}/v1/events", cloudevent, issued.secret, "application/cloudevents+json"
    )
    assert ce_first.json()["event_id"] == ce_again.json()["event_id"]

    reader = TopicReader(settings.kafka_bootstrap_servers, settings.kafka_topic)
    try:
        find(reader, issued.stored.tenant_id.encode(), 4)
        records = [m for m in reader.drain() if m.key() == issued.stored.tenant_id.encode()]
    finally:
        reader.close()
    assert len(records) == 4  # three batch events and one CloudEvent, each once


def test_gzip_bodies(single_url: str, batch_url: str, issue_key: KeyFactory) -> None:
    import gzip

    import httpx

    key = issue_key().secret
    headers = {"content-type": "application/json", "content-encoding": "gzip", "x-api-key": key}
    single = httpx.post(
        f"{single_url}/v1/events",
        content=gzip.compress(orjson.dumps(seed_event())),
        headers=headers,
        timeout=20,
    )
    assert single.status_code == 202, single.text
    batch = {"events": [seed_event() for _ in range(50)]}
    response = httpx.post(
        f"{batch_url}/v1/events/batch",
        content=gzip.compress(orjson.dumps(batch)),
        headers=headers,
        timeout=20,
    )
    assert response.status_code == 202 and response.json()["accepted"] == 50
    bomb = gzip.compress(b" " * 20_000_000)
    refused = httpx.post(f"{batch_url}/v1/events/batch", content=bomb, headers=headers, timeout=20)
    assert refused.status_code == 413
    assert httpx.get(f"{batch_url}/health").status_code == 200
