"""The dead-letter format: what `build_dead_letter` writes, `parse_dead_letter` reads back."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from audit_ingest.domain.dead_letters import (
    API_KEY_ID,
    CLOUDEVENT_PREFIX,
    ERRORS,
    REASON,
    RECEIVED_AT,
    REQUEST_ID,
    TENANT_ID,
    build_dead_letter,
    parse_dead_letter,
)
from audit_ingest.domain.envelope import CloudEventOrigin
from audit_ingest.errors import FieldError

ERRORS_SENT = (
    FieldError("resource", "resource is required.", "required"),
    FieldError('context["a.b"]', 'too long, with ünïcode and "quotes"', "too_long"),
)


@pytest.mark.parametrize(
    "origin",
    [
        None,
        CloudEventOrigin(id="ce-1", source="/crm", type="t"),
        CloudEventOrigin(
            id="ce-2", source="/crm", type="t", time="2024-12-05T10:00:00Z", subject="user/7"
        ),
    ],
)
def test_every_field_survives_the_round_trip(origin: CloudEventOrigin | None) -> None:
    original = orjson.dumps({"actor": {"id": "u"}, "note": "bytes as sent"})
    record = build_dead_letter(
        original,
        topic="audit.events.dlq.v1",
        reason="validation_failed",
        errors=ERRORS_SENT,
        tenant_id="tenant-1",
        request_id="req-1",
        received_at="2024-12-05T10:00:00.123Z",
        api_key_id="key-1",
        origin=origin,
    )
    assert record.key == b"tenant-1" and record.value == original
    letter = parse_dead_letter(record.topic, 3, 42, 1_700_000_000_000, record.headers, record.value)
    assert (letter.topic, letter.partition, letter.offset) == ("audit.events.dlq.v1", 3, 42)
    assert letter.reason == "validation_failed"
    assert letter.errors == tuple(error.as_dict() for error in ERRORS_SENT)
    assert (letter.tenant_id, letter.api_key_id, letter.request_id) == (
        "tenant-1",
        "key-1",
        "req-1",
    )
    assert letter.received() == datetime(2024, 12, 5, 10, 0, 0, 123000, tzinfo=UTC)
    assert letter.value == original
    expected = {}
    if origin is not None:
        expected = {
            name: value
            for name in ("id", "source", "type", "time", "subject")
            if (value := getattr(origin, name)) is not None
        }
    assert letter.cloudevent == expected


def test_the_header_names_are_the_documented_ones() -> None:
    # Operators' consumers read these names (docs/operations.md); renaming one is a contract
    # change, not a refactor.
    assert (REASON, ERRORS, TENANT_ID, API_KEY_ID, REQUEST_ID, RECEIVED_AT) == (
        "dlq_reason",
        "dlq_errors",
        "dlq_tenant_id",
        "dlq_api_key_id",
        "dlq_request_id",
        "dlq_received_at",
    )
    assert CLOUDEVENT_PREFIX == "dlq_ce_"


def test_damaged_headers_read_as_empty_not_as_a_crash() -> None:
    letter = parse_dead_letter("t", 0, 1, None, [(ERRORS, b'[1, {"field": 2}]')], b"")
    assert letter.errors == ({"field": "2"},)
    assert letter.tenant_id == "" and letter.received() is None
