"""A binary-mode CloudEvent's attributes, read from its `ce-*` headers without the SDK, against
the CloudEvents SDK's `from_http` reading that `parsing` used before.

For any set of headers (the four required ones present or not, valid or not, any `ce-*`
extension, the names the SDK treats specially: `ce-data`, `ce-extensions`,
`ce-datacontenttype`), `parse_single` accepts exactly what the SDK-based reading accepted, with
the same origin (id, source, type, time, subject), and refuses with the same message and field.
Where the SDK itself crashed (a `ce-extensions` header followed by an extension: a 500 before),
the request now gets a clean answer. Examples: `HOSTILE_PROPERTY_EXAMPLES` (default 100).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from cloudevents import exceptions as ce_errors
from cloudevents.http import from_http
from hypothesis import event, example, given
from hypothesis import strategies as st

from audit_ingest.domain.envelope import Envelope
from audit_ingest.errors import AuditError, MalformedBody
from audit_ingest.http import parsing
from audit_ingest.http.parsing import parse_single
from tests.hostile.strategies import CE_ATTRIBUTE_NAMES, SETTINGS

pytestmark = pytest.mark.unit

BODY = orjson.dumps(
    {
        "actor": {"id": "u-1", "type": "user"},
        "action": {"name": "doc.viewed"},
        "resource": {"type": "doc", "id": "d-1"},
        "result": {"success": True},
    }
)
# What an HTTP header value can hold once ASGI decodes it (latin-1, no CR, LF or NUL).
HEADER_TEXT = st.characters(min_codepoint=0x20, max_codepoint=0xFF)
VALUES = st.one_of(
    st.text(HEADER_TEXT, max_size=12),
    st.text(HEADER_TEXT, min_size=1025, max_size=1030),
    st.sampled_from(
        ["", " ", " padded ", "1.0", "0.3", "2024-12-05T10:00:00Z", "2024-13-05", "a%20b"]
    ),
)
CE_NAMES = st.one_of(
    st.sampled_from([*CE_ATTRIBUTE_NAMES, "extensions"]),
    st.text(st.characters(min_codepoint=0x61, max_codepoint=0x7A), min_size=1, max_size=8),
)
VALID = {
    "ce-specversion": "1.0",
    "ce-id": "evt-1",
    "ce-source": "/crm",
    "ce-type": "com.example.audit",
}


@st.composite
def header_sets(draw: st.DrawFn) -> dict[str, str]:
    """Headers of a request in binary mode: the required ones often valid, then anything."""
    headers: dict[str, str] = {"ce-specversion": "1.0"}  # what makes the request binary mode
    if draw(st.booleans()):
        headers.update(VALID)
    for name, value in draw(st.lists(st.tuples(CE_NAMES, VALUES), max_size=8)):
        headers[f"ce-{name}"] = value
    headers["content-type"] = draw(
        st.sampled_from(["application/json", "application/json; charset=utf-8", "", "text/x"])
    )
    if draw(st.booleans()):
        headers["ce-specversion"] = "1.0"
    order = draw(st.permutations(list(headers)))
    return {name: headers[name] for name in order}


def _outcome(read: Any) -> tuple[str, Any]:
    try:
        envelope: Envelope = read()
    except AuditError as error:
        return "refused", (type(error).__name__, str(error), getattr(error, "field", None))
    return "accepted", envelope.origin


def _read_by_the_sdk(headers: Mapping[str, str]) -> Envelope:
    """`parsing`'s binary-mode reading as it was, through the SDK's `from_http`."""
    kind = parsing.media_type(headers.get("content-type"))
    if kind not in ("", parsing.JSON):
        return parsing._binary_cloudevent(headers, BODY, kind)  # refuses the media type
    missing = [f"ce-{name}" for name in parsing._REQUIRED if not headers.get(f"ce-{name}")]
    if missing or headers["ce-specversion"] != "1.0":
        return parsing._binary_cloudevent(headers, BODY, kind)  # refuses as before the SDK
    try:
        event = from_http(dict(headers), BODY, data_unmarshaller=lambda data: data)
    except ce_errors.GenericException as exc:
        raise MalformedBody(f"Not a valid binary-mode CloudEvent: {exc}.") from None
    origin = parsing._origin(event.get_attributes(), headers.get("ce-time"), "")
    return Envelope(payload=orjson.loads(BODY), raw=BODY, origin=origin)


@SETTINGS
@given(header_sets())
@example({**VALID, "ce-extensions": "x", "ce-foo": "y", "content-type": "application/json"})
@example({**VALID, "ce-data": "z", "ce-subject": "doc-1", "content-type": "application/json"})
def test_binary_mode_reads_what_the_sdk_read(headers: dict[str, str]) -> None:
    # Anything but an accepted envelope or an AuditError (a 4xx) escapes here and fails.
    ours = _outcome(lambda: parse_single(headers, BODY))
    event("accepted" if ours[0] == "accepted" else "refused")
    try:
        theirs = _outcome(lambda: _read_by_the_sdk(headers))
    except (ValueError, AttributeError, TypeError):
        event("the SDK crashed")  # a 500 before; ours, above, answered cleanly
        return
    assert ours == theirs


def test_a_ce_extensions_header_is_an_extension_not_a_crash() -> None:
    headers = {**VALID, "ce-extensions": "x", "ce-foo": "y", "ce-subject": "doc-1"}
    envelope = parse_single({**headers, "content-type": "application/json"}, BODY)
    assert envelope.origin is not None
    assert (envelope.origin.id, envelope.origin.source, envelope.origin.type) == (
        "evt-1",
        "/crm",
        "com.example.audit",
    )
    assert envelope.origin.subject == "doc-1"
    with pytest.raises(ValueError, match="dictionary update sequence"):  # the SDK's reading
        from_http({**headers, "content-type": "application/json"}, BODY)
