"""The free-form limits' fast path (`plainly_within_limits`) skips only what the walk accepts.

For any JSON value in `context`, at limits small enough that both answers occur often, the
errors with the fast path equal the errors of the walk alone: the same fields, the same
reasons. A skip that hid an error would show as a missing one.
"""

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_ingest.domain import validation
from audit_ingest.domain.limits import Limits
from audit_ingest.errors import InvalidEvent

SMALL = Limits(max_depth=5, max_string_length=24)
NOW = datetime.now(UTC)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.text(max_size=40),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=25,
)


def walk_only(raw: dict[str, Any], limits: Limits) -> list[Any]:
    errors: list[Any] = []
    for name in ("context", "metadata"):
        value = raw.get(name)
        if isinstance(value, dict):
            validation._walk(value, (name,), 2, limits, errors)
    return errors


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=4), json_values)
def test_the_fast_path_never_hides_an_error(context: dict[str, Any], metadata: Any) -> None:
    raw = {"context": context, "metadata": metadata}
    assert validation._free_form_errors(raw, SMALL) == walk_only(raw, SMALL)


def test_both_answers_occur_and_a_typical_context_is_skipped() -> None:
    typical = {"ip": "203.0.113.7", "session": "s-1", "fields": ["title", "owner"]}
    assert validation.plainly_within_limits(typical, Limits())
    assert not validation.plainly_within_limits({"a": "x" * 25}, SMALL)  # too long a string
    assert not validation.plainly_within_limits({"a": [[[{}]]]}, SMALL)  # too many containers
    # A bracket inside a string only over-counts: the walk then decides, and finds nothing.
    brackets = {"a": "[[[{{{"}
    assert not validation.plainly_within_limits(brackets, SMALL)
    assert walk_only({"context": brackets}, SMALL) == []


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=4), json_values)
def test_judging_from_the_whole_event_never_hides_an_error(
    context: dict[str, Any], metadata: Any
) -> None:
    """`validate_event` first judges both free-form fields from the whole event's JSON."""
    raw = {"actor": {"id": "a"}, "action": {"name": "b"}, "resource": {"type": "c", "id": "d"}}
    raw |= {"context": context, "metadata": metadata}
    try:
        validation.validate_event(raw, tenant_id="t", received_at=NOW, limits=SMALL)
        found: list[Any] = []
    except InvalidEvent as invalid:
        found = [e for e in invalid.errors if e.field.startswith(("context", "metadata"))]
    # `metadata` that is not an object is the schema's error, not the walk's.
    walked = walk_only(raw, SMALL)
    assert [e for e in found if e.code in ("too_long", "too_deep")] == walked
