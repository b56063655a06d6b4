"""The typed event model and how events are prepared (key, timestamp, JSON)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from mock_server import make_event

from audit_ingest_sdk import Action, Actor, AuditEvent, Resource, Result
from audit_ingest_sdk._models import UTC
from audit_ingest_sdk._prepare import prepare_batch, prepare_event


def test_audit_event_serialises_like_the_api_schema_without_nones() -> None:
    event = AuditEvent(
        actor=Actor("user-123", type="user", email="user@example.com"),
        action="user.created",
        resource=Resource("user", "user-456"),
        timestamp=datetime(2024, 12, 5, 12, 0, 0, 250000, tzinfo=timezone(timedelta(hours=2))),
        result=Result(success=False, code="DENIED"),
        context={"ip": "203.0.113.7"},
    )
    assert event.to_dict() == {
        "actor": {"id": "user-123", "type": "user", "email": "user@example.com"},
        "action": {"name": "user.created"},
        "resource": {"type": "user", "id": "user-456"},
        "timestamp": "2024-12-05T10:00:00.250Z",
        "result": {"success": False, "code": "DENIED"},
        "context": {"ip": "203.0.113.7"},
    }
    assert AuditEvent(Actor("a"), Action("x"), Resource("t", "i")).to_dict()["action"] == {
        "name": "x"
    }


def test_naive_timestamps_are_refused() -> None:
    event = AuditEvent(Actor("a"), "x", Resource("t", "i"), timestamp=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        event.to_dict()


def test_prepare_adds_a_uuid4_key_and_the_current_time_once() -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    prepared = prepare_event(make_event())
    payload = prepared.payload
    assert uuid.UUID(prepared.idempotency_key).version == 4
    assert payload["idempotency_key"] == prepared.idempotency_key
    stamped = datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))
    assert before <= stamped <= datetime.now(UTC)
    assert prepare_event(make_event()).idempotency_key != prepared.idempotency_key


def test_prepare_keeps_the_callers_key_and_timestamp() -> None:
    event = make_event(idempotency_key="mine-1", timestamp="2024-12-05T10:00:00Z")
    assert prepare_event(event).payload["idempotency_key"] == "mine-1"
    assert prepare_event(event).payload["timestamp"] == "2024-12-05T10:00:00Z"
    assert prepare_event(event, idempotency_key="arg-2").idempotency_key == "arg-2"
    assert "timestamp" not in prepare_event(make_event(), stamp_time=False).payload


def test_prepare_snapshots_the_event() -> None:
    event = make_event()
    prepared = prepare_event(event)
    event["actor"]["id"] = "changed later"
    event["context"]["marker"] = 99
    assert json.loads(prepared.body)["actor"]["id"] == "user-0"
    assert prepared.payload["context"] == {"marker": 0}


def test_pydantic_models_are_accepted() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Ref(pydantic.BaseModel):
        type: str
        id: str
        name: str | None = None

    class Event(pydantic.BaseModel):
        actor: dict[str, str]
        action: dict[str, str]
        resource: Ref

    model = Event(actor={"id": "u"}, action={"name": "x"}, resource=Ref(type="t", id="i"))
    payload = prepare_event(model, stamp_time=False).payload
    assert payload["resource"] == {"type": "t", "id": "i"}
    assert set(payload) == {"actor", "action", "resource", "idempotency_key"}


def test_unsupported_values_are_refused_before_sending() -> None:
    with pytest.raises(TypeError, match="AuditEvent, a mapping"):
        prepare_event(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Out of range float"):
        prepare_event(make_event(context={"x": float("nan")}))
    with pytest.raises(TypeError, match="not JSON serialisable"):
        prepare_event(make_event(context={"x": object()}))


def test_a_batch_holds_one_to_a_thousand_events() -> None:
    assert len(prepare_batch([make_event(i) for i in range(1000)])) == 1000
    with pytest.raises(ValueError, match="1 to 1000 events, not 0"):
        prepare_batch([])
    with pytest.raises(ValueError, match="not 1001"):
        prepare_batch(make_event(i) for i in range(1001))
