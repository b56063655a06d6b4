"""The derived dict schema (`event_fields`) against the models it is derived from.

The pipeline validates events into dicts with TypedDicts derived from `model.py`; the models
stay the declared schema. These properties hold the two to the same behaviour under generated
input: the same events accepted, the same errors (field, kind and message) for the refused,
and the record's structured blocks byte for byte what the models' `model_dump` wrote before.
Examples: `HOSTILE_PROPERTY_EXAMPLES` (default 100), (tests/hostile/strategies.py).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from audit_ingest.domain.enrichment import Processing, RequestContext, enrich
from audit_ingest.domain.event_fields import EVENT_FIELDS
from audit_ingest.domain.limits import Limits
from audit_ingest.domain.model import AuditEventIn
from audit_ingest.domain.principal import Principal
from audit_ingest.domain.validation import _path, validate_event
from audit_ingest.errors import InvalidEvent
from tests.hostile.strategies import (
    SETTINGS,
    TENANT,
    json_values,
    mutated_events,
    valid_events,
)

pytestmark = pytest.mark.unit

NOW = datetime.now(UTC)
LIMITS = Limits()
PRINCIPAL = Principal(TENANT, "0b7e5f3c-2222-4222-8222-222222222222", ("events:write",), 100)
REQUEST = RequestContext("req-1", NOW, "127.0.0.1", "tests")
PROCESSING = Processing(node="n", function="f", revision="r", version="0")
BLOCKS = ("actor", "resource", "result")
FIELDS = list(AuditEventIn.model_fields)


@st.composite
def shuffled(draw: st.DrawFn, document: Any) -> Any:
    """`document` with every object's keys in a drawn order (clients send any order)."""
    if not isinstance(document, dict):
        return document
    names = draw(st.permutations(list(document)))
    return {name: draw(shuffled(document[name])) for name in names}


@st.composite
def everything_wrong(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with any number of its fields, at both levels, replaced at once."""
    document = copy.deepcopy(draw(valid_events()))
    for name in list(document):
        if isinstance(document[name], dict):
            for inner in list(document[name]):
                if draw(st.booleans()):
                    document[name][inner] = draw(json_values(max_leaves=3))
        if draw(st.integers(0, 3)) == 0:
            document[name] = draw(json_values(max_leaves=3))
    if draw(st.booleans()):
        document[draw(st.text(max_size=8))] = 1
    return document


def _errors(validate: Any, raw: object) -> list[tuple[Any, ...]] | None:
    """pydantic's errors, or None when the input passed. `model_type` (the models') and
    `dict_type` (the TypedDicts') are one error: "must be a JSON object"."""
    try:
        validate(raw)
    except ValidationError as exc:
        return [
            (
                detail["loc"],
                "dict_type" if detail["type"] == "model_type" else detail["type"],
                None if detail["type"] in ("model_type", "dict_type") else detail["msg"],
            )
            for detail in exc.errors(include_url=False)
        ]
    return None


def _same_decision(raw: object) -> None:
    assert _errors(EVENT_FIELDS.validate_python, raw) == _errors(AuditEventIn.model_validate, raw)


@SETTINGS
@given(raw=valid_events().flatmap(shuffled))
def test_valid_events_come_out_as_the_models_dump_them(raw: dict[str, Any]) -> None:
    _same_decision(raw)
    model = AuditEventIn.model_validate(raw)
    valid = validate_event(raw, tenant_id=TENANT, received_at=NOW, limits=LIMITS)
    # The dict keeps the models' field order whatever order the client sent.
    assert list(valid.fields) == [name for name in FIELDS if name in raw]
    assert valid.event == model
    record = orjson.loads(
        orjson.dumps(
            enrich(
                valid,
                event_id="e-1",
                principal=PRINCIPAL,
                request=REQUEST,
                processing=PROCESSING,
            )
        )
    )
    dumped = model.model_dump(include=set(BLOCKS), exclude_none=True)
    for block in BLOCKS:
        # Bytes, not dict equality: the order of the keys in the stored record is compared too.
        assert orjson.dumps(record.get(block)) == orjson.dumps(dumped.get(block))
    assert record["action"] == {"name": model.action.name.lower()}
    for name in ("context", "metadata", "idempotency_key"):
        assert record.get(name) == getattr(model, name)


# What a lax (not strict) schema would coerce: each must stay an error.
LAX = {"actor": {"id": 1, "email": "a@b.co"}, "action": {"name": "x"}}
COERCIBLE = [
    {**LAX, "resource": {"type": "t", "id": "i"}, "result": {"success": 1}},
    {**LAX, "resource": {"type": "t", "id": "i"}, "result": {"success": "true"}},
    {**LAX, "resource": {"type": "t", "id": 1.0}, "result": {"success": 0.0}},
    {**LAX, "resource": [("type", "t"), ("id", "i")], "context": [("k", "v")]},
]


@SETTINGS
@given(raw=st.one_of(mutated_events(), everything_wrong()).flatmap(shuffled))
@example(raw=COERCIBLE[0])
@example(raw=COERCIBLE[1])
@example(raw=COERCIBLE[2])
@example(raw=COERCIBLE[3])
def test_invalid_events_get_the_models_errors(raw: dict[str, Any]) -> None:
    _same_decision(raw)


@SETTINGS
@given(raw=everything_wrong())
def test_every_wrong_field_is_named_at_once(raw: dict[str, Any]) -> None:
    expected = _errors(AuditEventIn.model_validate, raw)
    try:
        validate_event(raw, tenant_id=TENANT, received_at=NOW, limits=LIMITS)
    except InvalidEvent as invalid:
        named = {error.field for error in invalid.errors}
        assert {_path(location) for location, _, _ in expected or []} <= named
    else:
        assert expected is None


def test_a_wrong_type_for_a_block_reads_as_the_model_error_did() -> None:
    raw = {"actor": "ada", "action": [], "resource": {"type": "t", "id": "i"}}
    with pytest.raises(InvalidEvent) as raised:
        validate_event(raw, tenant_id=TENANT, received_at=NOW, limits=LIMITS)
    messages = {(e.field, e.code, e.message) for e in raised.value.errors}
    assert messages == {
        ("actor", "type", "actor must be a JSON object."),
        ("action", "type", "action must be a JSON object."),
    }
