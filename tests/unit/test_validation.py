from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from audit_ingest.domain.limits import Limits
from audit_ingest.domain.validation import validate_event
from audit_ingest.errors import InvalidEvent
from tests.unit.samples import seed_event

NOW = datetime(2024, 12, 5, 10, 0, 0, tzinfo=UTC)
LIMITS = Limits(max_depth=6, max_string_length=50, max_future_skew_seconds=300)


def errors_of(raw: object, tenant: str = "t1") -> dict[str, str]:
    with pytest.raises(InvalidEvent) as caught:
        validate_event(raw, tenant_id=tenant, received_at=NOW, limits=LIMITS)
    return {error.field: error.code for error in caught.value.errors}


def test_seed_example_is_valid() -> None:
    valid = validate_event(seed_event(), tenant_id="t1", received_at=NOW, limits=LIMITS)
    assert valid.event.actor.id == "user-123"
    assert valid.occurred_at == NOW


def test_timestamp_defaults_to_received_at() -> None:
    raw = seed_event()
    del raw["timestamp"]
    assert validate_event(raw, tenant_id="t1", received_at=NOW, limits=LIMITS).occurred_at == NOW


def test_every_missing_required_field_is_named() -> None:
    assert errors_of({}) == {
        "actor": "required",
        "action": "required",
        "resource": "required",
    }
    assert errors_of({"actor": {}, "action": {}, "resource": {}}) == {
        "actor.id": "required",
        "action.name": "required",
        "resource.type": "required",
        "resource.id": "required",
    }


def test_types_are_strict() -> None:
    raw = seed_event(actor={"id": 123}, result={"success": "true"})
    assert errors_of(raw) == {"actor.id": "type", "result.success": "type"}


def test_empty_and_too_long_strings() -> None:
    raw = seed_event(actor={"id": ""}, resource={"type": "x" * 257, "id": "r"})
    assert errors_of(raw) == {"actor.id": "too_short", "resource.type": "too_long"}


def test_unknown_fields_are_refused_with_a_hint() -> None:
    with pytest.raises(InvalidEvent) as caught:
        validate_event(seed_event(resouce={}), tenant_id="t1", received_at=NOW, limits=LIMITS)
    (error,) = caught.value.errors
    assert error.field == "resouce" and error.code == "unknown_field"
    assert "context" in error.message


def test_email_is_validated() -> None:
    assert errors_of(seed_event(actor={"id": "u", "email": "not-an-email"})) == {
        "actor.email": "invalid_email"
    }


def test_tenant_in_body_must_match_the_key() -> None:
    assert errors_of(seed_event(tenant_id="other")) == {"tenant_id": "tenant_mismatch"}
    same = validate_event(
        seed_event(tenant_id="t1"), tenant_id="t1", received_at=NOW, limits=LIMITS
    )
    assert same.event.tenant_id == "t1"


@pytest.mark.parametrize("stamp", ["2024-12-05", "12/05/2024", "2024-12-05T10:00:00"])
def test_bad_timestamps(stamp: str) -> None:
    assert errors_of(seed_event(timestamp=stamp)) == {"timestamp": "invalid_timestamp"}


def test_far_future_timestamp_is_refused_but_skew_is_tolerated() -> None:
    assert errors_of(seed_event(timestamp="2024-12-05T10:05:01Z")) == {
        "timestamp": "timestamp_in_future"
    }
    ok = validate_event(
        seed_event(timestamp="2024-12-05T10:04:59Z"), tenant_id="t1", received_at=NOW, limits=LIMITS
    )
    assert ok.occurred_at > NOW


def test_nesting_and_string_limits_in_free_form_fields() -> None:
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(10):
        deep = {"n": deep}
    errors = errors_of(seed_event(context=deep, metadata={"note": "x" * 51}))
    assert errors["metadata.note"] == "too_long"
    assert any(
        code == "too_deep" and field.startswith("context.n") for field, code in errors.items()
    )


def test_non_object_event() -> None:
    assert errors_of([1, 2]) == {"": "type"}
    assert errors_of("event") == {"": "type"}


def test_all_errors_reported_together() -> None:
    raw = seed_event(actor={"id": 1}, timestamp="nope", tenant_id="x", extra=True)
    # Schema, timestamp and tenant errors in one answer, not one kind per round trip.
    assert errors_of(raw) == {
        "actor.id": "type",
        "extra": "unknown_field",
        "timestamp": "invalid_timestamp",
        "tenant_id": "tenant_mismatch",
    }


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_timestamps_beyond_the_representable_range(stamp: str) -> None:
    assert errors_of(seed_event(timestamp=stamp)) in (
        {"timestamp": "invalid_timestamp"},
        {"timestamp": "timestamp_in_future"},
    )


@pytest.mark.parametrize(
    "address",
    [
        "svc@corp.local",
        "root@localhost",
        "ci@host.test",
        '"first last"@example.com',
        "User@Example.COM",
    ],
)
def test_internal_addresses_are_accepted_and_stored_as_sent(address: str) -> None:
    valid = validate_event(
        seed_event(actor={"id": "u", "email": address}),
        tenant_id="t1",
        received_at=NOW,
        limits=LIMITS,
    )
    assert valid.event.actor.email == address


@pytest.mark.parametrize("address", ["x@@y", "no-at-sign", "a@b..c", "a" * 321 + "@x.io"])
def test_invalid_addresses_are_refused(address: str) -> None:
    assert errors_of(seed_event(actor={"id": "u", "email": address})) in (
        {"actor.email": "invalid_email"},
        {"actor.email": "too_long"},
    )


def test_keys_that_read_as_paths_are_quoted() -> None:
    errors = errors_of(seed_event(**{"": 1, "a.b": 2}))
    assert errors == {'[""]': "unknown_field", '["a.b"]': "unknown_field"}
    deep = errors_of(seed_event(metadata={"x.y": "z" * 51}))
    assert deep == {'metadata["x.y"]': "too_long"}


def test_every_field_wrong_at_once_is_named_in_one_answer() -> None:
    """The worst case a client can send: each rule broken once, all reported together."""
    limits = Limits(max_event_bytes=2_000, max_depth=4, max_string_length=50)
    deep: dict[str, object] = {"a": {"b": {"c": {"d": 1}}}}
    raw = {
        "actor": {"id": 1, "email": "not-an-address", "type": ""},
        "action": {"name": ""},
        "resource": {"type": "user"},
        "timestamp": "yesterday",
        "result": {"success": "maybe"},
        "context": {"deep": deep, "long": "x" * 51, "filler": ["y" * 40] * 60},
        "metadata": "not an object",
        "tenant_id": "someone-else",
        "colour": "red",
    }
    with pytest.raises(InvalidEvent) as caught:
        validate_event(raw, tenant_id="t1", received_at=NOW, limits=limits)
    found = {(error.field, error.code) for error in caught.value.errors}
    assert found >= {
        ("actor.id", "type"),
        ("actor.email", "invalid_email"),
        ("actor.type", "too_short"),
        ("action.name", "too_short"),
        ("resource.id", "required"),
        ("timestamp", "invalid_timestamp"),
        ("result.success", "type"),
        ("context.long", "too_long"),
        ("metadata", "type"),
        ("tenant_id", "tenant_mismatch"),
        ("colour", "unknown_field"),
        ("", "event_too_large"),
    }, found
    assert any(code == "too_deep" and field.startswith("context.deep") for field, code in found)


def test_the_issue_example_names_both_fields() -> None:
    raw = seed_event(result={"success": "maybe"}, timestamp="yesterday")
    assert errors_of(raw) == {"result.success": "type", "timestamp": "invalid_timestamp"}


def test_a_timestamp_in_the_future_is_reported_beside_schema_errors() -> None:
    raw = seed_event(timestamp="2030-01-01T00:00:00Z", resource={"type": "user"})
    assert errors_of(raw) == {"resource.id": "required", "timestamp": "timestamp_in_future"}


def test_event_size_is_its_compact_json() -> None:
    limits = Limits(max_event_bytes=300)
    small = seed_event(context={"note": "x" * 10})
    validate_event(small, tenant_id="t1", received_at=NOW, limits=limits)
    large = seed_event(context={"note": "x" * 200})
    with pytest.raises(InvalidEvent) as caught:
        validate_event(large, tenant_id="t1", received_at=NOW, limits=limits)
    (error,) = caught.value.errors
    assert (error.field, error.code) == ("", "event_too_large")
    assert str(len(orjson.dumps(large))) in error.message
