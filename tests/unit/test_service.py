from datetime import UTC, datetime

import orjson
import pytest

from audit_ingest.domain.enrichment import RequestContext
from audit_ingest.domain.envelope import Envelope
from audit_ingest.domain.limits import Limits
from audit_ingest.errors import SinkUnavailable
from audit_ingest.ports import Delivery
from audit_ingest.service import Accepted, IngestService, Rejected
from tests.unit.fakes import FakePublisher
from tests.unit.samples import PRINCIPAL, make_service, seed_event

NOW = datetime(2024, 12, 5, 10, 1, tzinfo=UTC)
REQUEST = RequestContext(request_id="req-9", received_at=NOW)


def service(publisher: FakePublisher, limits: Limits | None = None) -> IngestService:
    return make_service(publisher, limits=limits)


async def test_valid_events_are_published_and_accepted_in_order() -> None:
    publisher = FakePublisher()
    outcomes = await service(publisher).ingest(
        [Envelope(seed_event()), Envelope({"nope": 1}), Envelope(seed_event())],
        PRINCIPAL,
        REQUEST,
    )
    assert outcomes[0] == Accepted(0, "id-1")
    assert isinstance(outcomes[1], Rejected) and outcomes[1].index == 1
    assert outcomes[2] == Accepted(2, "id-2")
    assert [orjson.loads(r.value)["event_id"] for r in publisher.published] == ["id-1", "id-2"]
    # The publish waits what is left of the request's deadline (3 s here).
    (wait,) = publisher.timeouts
    assert 2.5 < wait <= 3.0


async def test_rejected_events_go_to_the_dead_letter_topic_with_original_bytes() -> None:
    publisher = FakePublisher()
    raw = b'{"actor": 1}'
    await service(publisher).ingest([Envelope({"actor": 1}, raw=raw)], PRINCIPAL, REQUEST)
    (letter,) = publisher.dead_letters
    assert letter.topic == "audit.events.dlq.v1" and letter.value == raw
    headers = dict(letter.headers)
    assert headers["dlq_reason"] == b"validation_failed"
    assert headers["dlq_tenant_id"] == b"t-1" and headers["dlq_request_id"] == b"req-9"
    assert publisher.published == []


async def test_nothing_acknowledged_is_sink_unavailable() -> None:
    publisher = FakePublisher([Delivery(False, "timed out")])
    with pytest.raises(SinkUnavailable):
        await service(publisher).ingest([Envelope(seed_event())], PRINCIPAL, REQUEST)
    assert publisher.dead_letters == []  # a retriable failure is for the client to retry


async def test_partial_acknowledgement_reports_the_failed_events() -> None:
    publisher = FakePublisher([Delivery(True), Delivery(False, "timed out")])
    outcomes = await service(publisher).ingest(
        [Envelope(seed_event()), Envelope(seed_event())], PRINCIPAL, REQUEST
    )
    assert isinstance(outcomes[0], Accepted)
    assert isinstance(outcomes[1], Rejected)
    assert outcomes[1].errors[0].code == "sink_unavailable"


async def test_permanent_produce_errors_are_dead_lettered() -> None:
    publisher = FakePublisher([Delivery(False, "Broker: Message size too large", retriable=False)])
    with pytest.raises(SinkUnavailable):
        await service(publisher).ingest([Envelope(seed_event())], PRINCIPAL, REQUEST)
    (letter,) = publisher.dead_letters
    assert dict(letter.headers)["dlq_reason"] == b"produce_failed"


async def test_oversized_event_is_rejected_not_published() -> None:
    publisher = FakePublisher()
    big = seed_event(context={"blob": "x" * 8000})
    limits = Limits(max_event_bytes=1024, max_string_length=10_000)
    (outcome,) = await service(publisher, limits).ingest([Envelope(big)], PRINCIPAL, REQUEST)
    assert isinstance(outcome, Rejected) and outcome.errors[0].code == "event_too_large"
    assert publisher.published == []


async def test_cloudevent_time_is_the_default_timestamp() -> None:
    from audit_ingest.domain.envelope import CloudEventOrigin

    publisher = FakePublisher()
    origin = CloudEventOrigin(id="c", source="/s", type="t", time="2024-12-05T09:00:00+01:00")
    other = CloudEventOrigin(id="d", source="/s", type="t", time="2024-12-05T09:00:00+01:00")
    event = seed_event()
    del event["timestamp"]
    stamped = seed_event(timestamp="2024-12-01T00:00:00Z")
    await service(publisher).ingest(
        [Envelope(event, origin=origin), Envelope(stamped, origin=other)], PRINCIPAL, REQUEST
    )
    values = [orjson.loads(record.value) for record in publisher.published]
    assert values[0]["timestamp"] == "2024-12-05T08:00:00.000Z"  # from the CloudEvent
    assert values[1]["timestamp"] == "2024-12-01T00:00:00.000Z"  # the event's own wins


async def test_dead_letters_keep_the_cloudevent_attributes() -> None:
    from audit_ingest.domain.envelope import CloudEventOrigin

    publisher = FakePublisher()
    origin = CloudEventOrigin(id="ce-1", source="/crm", type="com.crm.x", subject="u-1")
    await service(publisher).ingest([Envelope({"actor": 1}, origin=origin)], PRINCIPAL, REQUEST)
    (letter,) = publisher.dead_letters
    headers = dict(letter.headers)
    assert (headers["dlq_ce_id"], headers["dlq_ce_source"], headers["dlq_ce_type"]) == (
        b"ce-1",
        b"/crm",
        b"com.crm.x",
    )
    assert headers["dlq_ce_subject"] == b"u-1" and "dlq_ce_time" not in headers
    assert headers["dlq_api_key_id"] == b"key-1"
