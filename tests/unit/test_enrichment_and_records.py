from datetime import UTC, datetime

import orjson
from cloudevents.http import CloudEvent
from cloudevents.kafka import to_binary

from audit_ingest.domain.dead_letters import build_dead_letter
from audit_ingest.domain.enrichment import Processing, RequestContext, enrich
from audit_ingest.domain.envelope import CloudEventOrigin
from audit_ingest.domain.limits import Limits
from audit_ingest.domain.records import build_record, default_source, serialize
from audit_ingest.domain.validation import validate_event
from audit_ingest.errors import FieldError
from tests.unit.samples import PRINCIPAL, seed_event

RECEIVED = datetime(2024, 12, 5, 10, 0, 0, 123456, tzinfo=UTC)
REQUEST = RequestContext(
    request_id="req-1", received_at=RECEIVED, client_ip="10.0.0.1", user_agent="curl/8"
)
PROCESSING = Processing(
    node="node-a", function="ingest-event", revision="ingest-event-00001", version="0.1.0"
)


def enriched(**event_changes: object) -> dict[str, object]:
    raw = seed_event(**event_changes)
    raw["action"] = {"name": "User.CREATED"}
    valid = validate_event(raw, tenant_id="t-1", received_at=RECEIVED, limits=Limits())
    return enrich(
        valid,
        event_id="0192d4e5-8a7c-7def-9012-3456789abcde",
        principal=PRINCIPAL,
        request=REQUEST,
        processing=PROCESSING,
    )


def test_enrichment_adds_the_seed_fields() -> None:
    body = enriched()
    assert body["event_id"] == "0192d4e5-8a7c-7def-9012-3456789abcde"
    assert body["received_at"] == "2024-12-05T10:00:00.123Z"
    assert body["timestamp"] == "2024-12-05T10:00:00.000Z"
    assert body["event_date"] == "2024-12-05"
    assert body["action"] == {"name": "user.created"}
    assert body["tenant_id"] == "t-1" and body["api_key_id"] == "key-1"
    assert body["request_id"] == "req-1"
    assert body["client"] == {"ip": "10.0.0.1", "user_agent": "curl/8"}
    assert body["processing"] == {
        "node": "node-a",
        "function": "ingest-event",
        "revision": "ingest-event-00001",
        "version": "0.1.0",
    }
    assert body["actor"] == {"id": "user-123", "type": "user", "email": "user@example.com"}


def test_event_date_follows_the_event_timestamp_in_utc() -> None:
    body = enriched(timestamp="2024-12-04T23:30:00-02:00")
    assert body["event_date"] == "2024-12-05"
    assert body["timestamp"] == "2024-12-05T01:30:00.000Z"


def test_cloudevent_origin_is_kept() -> None:
    valid = validate_event(seed_event(), tenant_id="t-1", received_at=RECEIVED, limits=Limits())
    body = enrich(
        valid,
        event_id="e",
        principal=PRINCIPAL,
        request=REQUEST,
        processing=PROCESSING,
        origin=CloudEventOrigin(id="ce-1", source="/crm", type="com.x.created"),
    )
    assert body["cloudevent"] == {"id": "ce-1", "source": "/crm", "type": "com.x.created"}


def test_record_follows_the_cloudevents_kafka_binding() -> None:
    body = enriched()
    value = serialize(body)
    record = build_record(body, value, topic="audit.events.v1", source=default_source(PRINCIPAL))
    headers = dict(record.headers)
    assert record.topic == "audit.events.v1"
    assert record.key == b"t-1"
    assert orjson.loads(record.value) == body
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == body["event_id"].encode()  # type: ignore[attr-defined]
    assert headers["ce_source"] == b"/tenants/t-1/api-keys/key-1"
    assert headers["ce_type"] == b"audit.event.v1"
    assert headers["ce_time"] == b"2024-12-05T10:00:00.000Z"
    assert headers["content-type"] == b"application/json"


def test_record_matches_the_cloudevents_sdk_binding_byte_for_byte() -> None:
    # build_record writes the six headers itself (the SDK costs ~15 µs a record); the SDK's
    # own binary-mode binding stays the reference for key, value and headers, in order.
    body = enriched()
    value = serialize(body)
    source = default_source(PRINCIPAL)
    record = build_record(body, value, topic="audit.events.v1", source=source)
    event = CloudEvent.create(
        {
            "id": body["event_id"],
            "source": source,
            "type": "audit.event.v1",
            "time": body["timestamp"],
            "datacontenttype": "application/json",
            "specversion": "1.0",
        },
        value,
    )
    message = to_binary(event, data_marshaller=lambda d: d, key_mapper=lambda _: body["tenant_id"])
    assert isinstance(message.key, str)
    assert record.key == message.key.encode()
    assert record.value == message.value
    assert list(record.headers) == list(message.headers.items())


def test_dead_letter_keeps_original_bytes_and_says_why() -> None:
    record = build_dead_letter(
        b'{"bad": true}',
        topic="audit.events.dlq.v1",
        reason="validation_failed",
        errors=[FieldError("actor", "actor is required.", "required")],
        tenant_id="t-1",
        request_id="req-1",
        received_at="2024-12-05T10:00:00.123Z",
    )
    headers = dict(record.headers)
    assert record.value == b'{"bad": true}' and record.key == b"t-1"
    assert headers["dlq_reason"] == b"validation_failed"
    assert orjson.loads(headers["dlq_errors"]) == [
        {"field": "actor", "message": "actor is required.", "code": "required"}
    ]
    assert headers["dlq_request_id"] == b"req-1"
