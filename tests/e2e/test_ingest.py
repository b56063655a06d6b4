"""End to end: HTTP into the function processes, records read back from Kafka."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from audit_ingest.adapters.key_admin import revoke_key
from audit_ingest.settings import Settings
from tests.e2e.client import find, post
from tests.stack import KeyFactory, TopicReader
from tests.unit.samples import seed_event

pytestmark = pytest.mark.e2e
Reader = Callable[[str], TopicReader]


def test_seed_example_lands_in_the_topic_with_cloudevent_headers(
    single_url: str, issue_key: KeyFactory, settings: Settings, read_topic: Reader
) -> None:
    issued = issue_key()
    event = seed_event(timestamp="2024-12-05T10:00:00Z", action={"name": "User.Created"})
    response = post(
        f"{single_url}/v1/events",
        event,
        issued.secret,
        **{"x-request-id": "e2e-req-1", "user-agent": "e2e-test"},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    event_id = uuid.UUID(body["event_id"])
    assert event_id.version == 7
    assert response.headers["x-request-id"] == "e2e-req-1"

    tenant = issued.stored.tenant_id.encode()
    (message,) = find(read_topic(settings.kafka_topic), tenant, 1)
    headers = {name: value.decode() for name, value in message.headers()}
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_id"] == body["event_id"]
    assert headers["ce_type"] == "audit.event.v1"
    assert headers["ce_source"] == f"/tenants/{issued.stored.tenant_id}/api-keys/{issued.stored.id}"
    assert headers["ce_time"] == "2024-12-05T10:00:00.000Z"
    assert headers["content-type"] == "application/json"
    value = orjson.loads(message.value())
    assert value["event_id"] == body["event_id"] and value["received_at"] == body["received_at"]
    assert value["tenant_id"] == issued.stored.tenant_id
    assert value["api_key_id"] == issued.stored.id
    assert value["action"] == {"name": "user.created"}
    assert value["event_date"] == "2024-12-05"
    assert value["request_id"] == "e2e-req-1"
    assert value["client"] == {"ip": "127.0.0.1", "user_agent": "e2e-test"}
    assert value["processing"]["function"] == "ingest-event"
    assert value["actor"] == event["actor"] and value["resource"] == event["resource"]


def test_batch_partial_success_and_dead_letters(
    batch_url: str, issue_key: KeyFactory, settings: Settings, read_topic: Reader
) -> None:
    issued = issue_key()
    events = [seed_event(resource={"type": "doc", "id": str(i)}) for i in range(5)]
    events[2] = {"actor": {"id": "u"}, "action": {"name": "x"}}  # no resource
    response = post(f"{batch_url}/v1/events/batch", {"events": events}, issued.secret)
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (4, 1)
    rejected = body["events"][2]
    assert rejected["status"] == "rejected" and rejected["errors"][0]["field"] == "resource"

    tenant = issued.stored.tenant_id.encode()
    stored = find(read_topic(settings.kafka_topic), tenant, 4)
    assert [orjson.loads(m.value())["resource"]["id"] for m in stored] == ["0", "1", "3", "4"]
    accepted_ids = [e["event_id"] for e in body["events"] if e["status"] == "accepted"]
    assert [orjson.loads(m.value())["event_id"] for m in stored] == accepted_ids

    (letter,) = find(read_topic(settings.kafka_dlq_topic), tenant, 1)
    headers = dict(letter.headers())
    assert headers["dlq_reason"] == b"validation_failed"
    assert orjson.loads(letter.value()) == events[2]
    assert headers["dlq_request_id"].decode() == response.headers["x-request-id"]


def test_cloudevents_binary_structured_and_batched(
    single_url: str,
    batch_url: str,
    issue_key: KeyFactory,
    settings: Settings,
    read_topic: Reader,
) -> None:
    issued = issue_key()
    event = seed_event()
    binary = post(
        f"{single_url}/v1/events",
        event,
        issued.secret,
        **{"ce-specversion": "1.0", "ce-id": "crm-1", "ce-source": "/crm", "ce-type": "com.crm.x"},
    )
    assert binary.status_code == 202, binary.text
    structured = {
        "specversion": "1.0",
        "id": "crm-2",
        "source": "/crm",
        "type": "com.crm.x",
        "datacontenttype": "application/json",
        "data": event,
    }
    response = post(
        f"{single_url}/v1/events", structured, issued.secret, "application/cloudevents+json"
    )
    assert response.status_code == 202, response.text
    batch = [dict(structured, id=f"crm-b{i}") for i in range(3)]
    batched = post(
        f"{batch_url}/v1/events/batch", batch, issued.secret, "application/cloudevents-batch+json"
    )
    assert batched.status_code == 202 and batched.json()["accepted"] == 3

    stored = find(read_topic(settings.kafka_topic), issued.stored.tenant_id.encode(), 5)
    origins = [orjson.loads(m.value())["cloudevent"]["id"] for m in stored]
    assert origins == ["crm-1", "crm-2", "crm-b0", "crm-b1", "crm-b2"]
    assert {dict(m.headers())["ce_source"] for m in stored} == {b"/crm"}


@pytest.mark.parametrize("path", ["/v1/events", "/v1/events/batch"])
def test_auth_matrix_and_nothing_written(
    path: str,
    single_url: str,
    batch_url: str,
    issue_key: KeyFactory,
    settings: Settings,
    read_topic: Reader,
) -> None:
    url = (batch_url if path.endswith("batch") else single_url) + path
    body: Any = {"events": [seed_event()]} if path.endswith("batch") else seed_event()
    revoked = issue_key()
    revoke_key(settings.database_url.get_secret_value(), uuid.UUID(revoked.stored.id))
    read_only = issue_key(scopes=("events:read",))
    from datetime import UTC, datetime, timedelta

    expired = issue_key(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    cases = {
        None: 401,
        "not-a-key": 401,
        "aik_" + "A" * 46: 401,
        revoked.secret: 403,
        read_only.secret: 403,
        expired.secret: 403,
    }
    for key, status in cases.items():
        response = post(url, body, key)
        assert response.status_code == status, (key, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == status
        assert response.headers["x-request-id"]
        assert key is None or key not in response.text
    tenants = {k.stored.tenant_id.encode() for k in (revoked, read_only, expired)}
    written = read_topic(settings.kafka_topic).drain()
    assert not [m for m in written if m.key() in tenants]


def test_revocation_applies_within_the_cache_ttl(
    single_url: str, issue_key: KeyFactory, settings: Settings
) -> None:
    issued = issue_key()
    assert post(f"{single_url}/v1/events", seed_event(), issued.secret).status_code == 202
    revoke_key(settings.database_url.get_secret_value(), uuid.UUID(issued.stored.id))
    deadline = time.monotonic() + 5  # the e2e functions run with a 1 s key cache TTL
    status = 202
    while time.monotonic() < deadline and status == 202:
        status = post(f"{single_url}/v1/events", seed_event(), issued.secret).status_code
        time.sleep(0.1)
    assert status == 403


def test_bad_requests_are_4xx_problems(
    single_url: str, batch_url: str, issue_key: KeyFactory
) -> None:
    key = issue_key().secret
    single, batch = f"{single_url}/v1/events", f"{batch_url}/v1/events/batch"
    cases = [
        (single, b"{not json", "application/json", 400),
        (single, b"[" * 10_000 + b"]" * 10_000, "application/json", 400),  # 20 KB, 10k deep
        (single, b"[" * 1000 + b"]" * 1000, "application/json", 400),
        (single, orjson.dumps(seed_event(context={"x": "y" * 70_000})), "application/json", 413),
        (single, b'{"a": NaN}', "application/json", 400),
        (single, b'"\xff"', "application/json", 400),
        (single, orjson.dumps(seed_event()), "text/plain", 415),
        (single, orjson.dumps(seed_event(tenant_id=str(uuid.uuid4()))), "application/json", 400),
        (batch, orjson.dumps({"events": [seed_event()] * 1001}), "application/json", 400),
        (batch, orjson.dumps({"events": []}), "application/json", 400),
        (batch, orjson.dumps([seed_event()]), "application/json", 400),
    ]
    for url, content, content_type, status in cases:
        response = post(url, content, key, content_type)
        assert response.status_code == status, (content[:40], response.text[:300])
        assert response.headers["content-type"] == "application/problem+json"
    # Both workers are still serving.
    assert httpx.get(f"{single_url}/health").status_code == 200
    assert httpx.get(f"{batch_url}/health").status_code == 200


def test_health_ready_metrics(single_url: str, batch_url: str) -> None:
    for url in (single_url, batch_url):
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}
        ready = httpx.get(f"{url}/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"broker": "ok", "key_store": "ok"}
        assert "audit_ingest_requests_total" in httpx.get(f"{url}/metrics").text
