"""The one-parse fast path never lets through what the validating second parse refuses."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_ingest.errors import MalformedBody
from audit_ingest.http.parsing import plainly_unambiguous, refuse_ambiguous_json

KEYS = st.sampled_from(["a", "b", "a:b", ":", "é", "k\\u003a", 'q"'])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet='ab: \\"u0', max_size=8),
)


def render(value: Any, duplicate: bool, spaces: bool) -> str:
    """JSON text; objects may repeat their first key (the kind of body orjson folds)."""
    if isinstance(value, dict):
        items = list(value.items())
        if duplicate and items:
            items.append(items[0])
        sep = " : " if spaces else ":"
        inner = ",".join(json.dumps(k) + sep + render(v, duplicate, spaces) for k, v in items)
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ",".join(render(v, duplicate, spaces) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


documents = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=12,
)


@settings(max_examples=2000, deadline=None)
@given(documents, st.booleans(), st.booleans())
def test_fast_path_never_accepts_what_the_full_check_refuses(
    document: Any, duplicate: bool, spaces: bool
) -> None:
    body = render(document, duplicate, spaces).encode()
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    if plainly_unambiguous(body, parsed):
        refuse_ambiguous_json(body)  # must not raise
    elif not duplicate and b"\\u" not in body and not re.search(rb"[0-9]{19}", body):
        pytest.fail(f"a plain body took the slow path: {body!r}")


@pytest.mark.parametrize(
    "body",
    [
        b'{"actor": {"id": "a"}, "actor": {"id": "mallory"}}',
        b'{"a" :1,"a":2}',  # a spaced key: the count still sees the dropped one
        b'{"a":1,"a":2,"x":"\\u003a"}',  # an escaped colon: left to the full check
        b'{"context": {"n": 18446744073709551616}}',
        b'{"context": {"n": -9223372036854775809}}',
        # Compact, as orjson writes: what it dropped or rounded reads differently.
        b'{"a":1,"a":2}',
        b'{"a":2,"a":2}',
        b'{"n":18446744073709551616}',
        b'{"n":-9223372036854775809}',
        b'{"n":123456789012345678901234567890}',
    ],
)
def test_ambiguous_bodies_take_the_full_check(body: bytes) -> None:
    assert not plainly_unambiguous(body, orjson.loads(body))
    with pytest.raises(MalformedBody):
        refuse_ambiguous_json(body)


def test_a_body_written_as_orjson_writes_it_needs_one_comparison() -> None:
    # 19-digit integers within 64 bits and a `\u` escape would each send a spaced body to the
    # full check; written as orjson writes them, the text itself shows nothing was lost.
    body = b'{"n":18446744073709551615,"m":-9223372036854775808,"c":"\\u001f","s":"a:b"}'
    document = orjson.loads(body)
    assert orjson.dumps(document) == body
    assert plainly_unambiguous(body, document)
    refuse_ambiguous_json(body)  # the full check agrees


def test_a_plain_event_needs_one_parse() -> None:
    body = b'{"actor": {"id": "u:1", "email": "a@b.c"}, "context": {"n": 123456789012345678}}'
    assert plainly_unambiguous(body, orjson.loads(body))
