"""A structured CloudEvent's attributes, read straight from the document when every attribute name
is in lower case, against the CloudEvents SDK's `from_dict` reading that `parsing` used for every
document before.

For any document (the four required attributes present or not, of any JSON type, names in any
case, repeated in another case, `data` and `data_base64` or neither, any extension), in a single
request and at any position of a batch, `parse_single`/`parse_batch` accept exactly what the
SDK-based reading accepted, with the same origin (id, source, type, time, subject) and payload,
and refuse with the same error, message and field. Where the SDK itself crashed (a version it
cannot hash, restated under a name in another case: a 500 before), the request is now refused
cleanly. Examples: `HOSTILE_PROPERTY_EXAMPLES`
(default 100).
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Mapping
from typing import Any
from unittest import mock

import orjson
import pytest
from cloudevents import exceptions as ce_errors
from cloudevents.http import from_dict
from hypothesis import event, example, given
from hypothesis import strategies as st

from audit_ingest.domain.envelope import Envelope
from audit_ingest.errors import AuditError, MalformedBody
from audit_ingest.http import parsing
from audit_ingest.http.parsing import parse_batch, parse_single
from tests.hostile.strategies import CE_ATTRIBUTE_NAMES, SETTINGS, json_values

pytestmark = pytest.mark.unit

PAYLOAD = {
    "actor": {"id": "u-1", "type": "user"},
    "action": {"name": "doc.viewed"},
    "resource": {"type": "doc", "id": "d-1"},
    "result": {"success": True},
}
VALID = {"specversion": "1.0", "id": "evt-1", "source": "/crm", "type": "com.example.audit"}
NAMES = st.sampled_from([*CE_ATTRIBUTE_NAMES, "data_base64", "comexampleext"])
# A name as the spec writes it, or in another case (the SDK reads names case-insensitively).
CASED_NAMES = st.one_of(
    NAMES,
    NAMES.map(str.upper),
    NAMES.map(str.title),
    st.sampled_from(["", "_", "1", "x-y", "ÿ"]),
)
VALUES = st.one_of(
    st.sampled_from(
        [
            "1.0",
            "0.3",
            "2.0",
            "",
            "evt-2",
            "/other",
            "2024-12-05T10:00:00Z",
            "2024-13-05",
            "application/json",
            "text/plain",
            "x" * 1025,
            base64.b64encode(orjson.dumps(PAYLOAD)).decode(),
            "not base64!",
        ]
    ),
    json_values(max_leaves=4),
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A structured CloudEvent: the required attributes often valid, then anything."""
    document: dict[str, Any] = dict(VALID) if draw(st.booleans()) else {}
    if draw(st.booleans()):
        document["data"] = PAYLOAD
    for name, value in draw(st.lists(st.tuples(CASED_NAMES, VALUES), max_size=6)):
        document[name] = value
    order = draw(st.permutations(list(document)))
    return {name: document[name] for name in order}


def _sdk_attributes(document: dict[str, object], where: str) -> Mapping[str, object]:
    """`parsing._attributes` as it was: every document's attributes through the SDK's
    `from_dict`."""
    try:
        sdk_event = from_dict(document)
    except ce_errors.GenericException as exc:
        raise MalformedBody(f"{where or 'The body'} is not a valid CloudEvent: {exc}.") from None
    return sdk_event.get_attributes()


def _read_by_the_sdk(document: object, where: str) -> Envelope:
    """`parsing._structured_cloudevent` as it was: the same checks, then the attributes read
    by the SDK for every document."""
    with mock.patch.object(parsing, "_attributes", _sdk_attributes):
        return parsing._structured_cloudevent(document, where)


def _theirs(read: Callable[[], Any]) -> tuple[str, Any] | None:
    """The SDK-based reading's outcome, or None where the SDK crashed (a 500 before)."""
    try:
        return _outcome(read)
    except TypeError:
        event("the SDK crashed")
        return None


def _outcome(read: Callable[[], Any]) -> tuple[str, Any]:
    try:
        envelopes = read()
    except AuditError as error:
        return "refused", (type(error).__name__, str(error), getattr(error, "field", None))
    if isinstance(envelopes, Envelope):
        envelopes = [envelopes]
    return "accepted", [(e.payload, e.origin, e.raw) for e in envelopes]


CE = {"content-type": parsing.CE_STRUCTURED}
CE_BATCH = {"content-type": parsing.CE_BATCH}


@SETTINGS
@given(documents())
@example({**VALID, "data": PAYLOAD, "Subject": "doc-1"})
@example({**VALID, "data": PAYLOAD, "ID": "evt-2"})
@example({**VALID, "data": PAYLOAD, "SPECVERSION": "2.0"})
@example({**VALID, "data": PAYLOAD, "Id": 5})
@example({**VALID, "data": PAYLOAD, "SPECVERSION": []})
def test_a_structured_cloudevent_reads_what_the_sdk_read(document: dict[str, Any]) -> None:
    body = orjson.dumps(document)
    # Anything but envelopes or an AuditError (a 4xx) escapes here and fails.
    ours = _outcome(lambda: parse_single(CE, body))
    event(ours[0])
    event("lower-case names" if all(n.islower() for n in document) else "other names")
    theirs = _theirs(lambda: _read_by_the_sdk(copy.deepcopy(document), ""))
    if theirs is None:
        assert ours[0] == "refused"
        assert ours[1][0] == "MalformedBody"
        assert "is not a valid CloudEvent" in ours[1][1]
    else:
        assert ours == theirs


@SETTINGS
@given(st.lists(documents(), min_size=1, max_size=4))
def test_each_event_of_a_cloudevents_batch_reads_what_the_sdk_read(
    batch: list[dict[str, Any]],
) -> None:
    body = orjson.dumps(batch)
    ours = _outcome(lambda: parse_batch(CE_BATCH, body, max_events=1000))
    theirs = _theirs(
        lambda: [_read_by_the_sdk(copy.deepcopy(d), f"[{i}]") for i, d in enumerate(batch)]
    )
    if theirs is None:
        assert ours[0] == "refused"
        assert "is not a valid CloudEvent" in ours[1][1]
    else:
        assert ours == theirs


def test_a_version_the_sdk_cannot_hash_is_refused_not_a_crash() -> None:
    body = orjson.dumps({**VALID, "data": PAYLOAD, "SPECVERSION": []})
    with pytest.raises(MalformedBody, match="is not a valid CloudEvent"):
        parse_single(CE, body)
    with pytest.raises(TypeError, match="unhashable"):  # the SDK's reading
        from_dict({**VALID, "SPECVERSION": []})


def test_an_attribute_name_in_another_case_is_still_read() -> None:
    # The SDK lower-cases names: `Subject` is the subject, and a later `ID` replaces `id`.
    body = orjson.dumps({**VALID, "data": PAYLOAD, "Subject": "doc-1", "ID": "evt-2"})
    origin = parse_single(CE, body).origin
    assert origin is not None
    assert (origin.id, origin.subject) == ("evt-2", "doc-1")
