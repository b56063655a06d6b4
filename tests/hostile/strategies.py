"""Hypothesis strategies for audit events, shared by the hostile-input properties.

Valid events are generated from the model's rules (shared/audit_ingest/domain/model.py);
`mutated_events` breaks one subtree of a valid one. `SETTINGS` reads
`HOSTILE_PROPERTY_EXAMPLES` (default 100).
"""

from __future__ import annotations

import copy
import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from audit_ingest.domain.limits import Limits
from tests.hostile.harness import TENANT as TENANT  # re-exported for the tests

# CloudEvents attribute names the parsers read or the SDK treats specially (the binary and
# structured readings' property tests draw from them).
CE_ATTRIBUTE_NAMES = (
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "data",
    "datacontenttype",
    "dataschema",
    "traceparent",
)

EXAMPLES = int(os.environ.get("HOSTILE_PROPERTY_EXAMPLES", "100"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the time bound is asserted on the pipeline alone
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NOW = datetime.now(UTC)
LIMITS = Limits()

# -- strategies: valid events, from the model's rules (shared/audit_ingest/domain/model.py) --------

# Any Unicode text JSON can carry (no lone surrogates: not encodable as UTF-8).
TEXT = st.characters(exclude_categories=["Cs"])


def bounded_text(low: int, high: int) -> st.SearchStrategy[str]:
    """Text of `low`..`high` characters, often at the bounds themselves."""
    return st.one_of(
        st.text(TEXT, min_size=low, max_size=min(high, 24)),
        st.text(TEXT, min_size=high, max_size=high),
        st.text(TEXT, min_size=low, max_size=low),
    )


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value, or null (absent is handled by `drop_absent`)."""
    return st.one_of(st.none(), strategy)


ABSENT = object()


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(ABSENT), optional(strategy))


def drop_absent(document: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in document.items() if value is not ABSENT}


EMAILS = st.from_regex(
    r"\A[a-z0-9]{1,16}([._+-][a-z0-9]{1,8})?@[a-z0-9]{1,16}(-[a-z0-9]{1,8})?\.(com|org|net|io)\Z"
)

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(TEXT, max_size=40),
)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    return st.recursive(
        JSON_LEAVES,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(TEXT, max_size=12), children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


# `context` and `metadata`: nested at most 16 levels from the event root (recursive strategies
# stay well inside that with 12 leaves), strings at most 8192 characters.
FREE_FORM = st.one_of(
    st.dictionaries(st.text(TEXT, max_size=12), json_values(), max_size=5),
    st.builds(lambda: {"s": "x" * LIMITS.max_string_length}),  # a fresh dict each time
)


@st.composite
def rfc3339(draw: st.DrawFn, latest: datetime = NOW) -> str:
    """An RFC 3339 date-time no later than `latest`, in any of the accepted spellings."""
    utc = draw(
        st.datetimes(min_value=datetime(2, 1, 1), max_value=latest.replace(tzinfo=None))
    ).replace(tzinfo=UTC)
    digits = draw(st.text("0123456789", max_size=9))
    utc = utc.replace(microsecond=int(digits[:6].ljust(6, "0")) if digits else 0)
    if draw(st.booleans()):
        offset, suffix = timedelta(0), draw(st.sampled_from("Zz"))
    else:
        minutes = draw(st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1))
        offset = timedelta(minutes=minutes)
        sign = "-" if minutes < 0 else draw(st.sampled_from("+-")) if minutes == 0 else "+"
        suffix = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    local = utc.astimezone(timezone(offset))
    separator = draw(st.sampled_from("Tt "))
    fraction = f".{digits}" if digits else ""
    date = f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
    clock = f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
    return f"{date}{separator}{clock}{fraction}{suffix}"


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    actor = drop_absent(
        {
            "id": draw(bounded_text(1, 256)),
            "type": draw(maybe(bounded_text(1, 256))),
            "email": draw(maybe(EMAILS)),
            "name": draw(maybe(bounded_text(1, 256))),
        }
    )
    resource = drop_absent(
        {
            "type": draw(bounded_text(1, 256)),
            "id": draw(bounded_text(1, 256)),
            "name": draw(maybe(bounded_text(1, 256))),
        }
    )
    result = drop_absent(
        {
            "success": draw(st.booleans()),
            "code": draw(maybe(bounded_text(1, 256))),
            "message": draw(maybe(bounded_text(0, 2048))),
        }
    )
    return drop_absent(
        {
            "actor": actor,
            "action": {"name": draw(bounded_text(1, 256))},
            "resource": resource,
            # At most MAX_FUTURE_SKEW_SECONDS ahead of the receive time.
            "timestamp": draw(maybe(rfc3339(NOW + timedelta(seconds=299)))),
            "result": draw(maybe(st.just(result))),
            "context": draw(maybe(FREE_FORM)),
            "metadata": draw(maybe(FREE_FORM)),
            "tenant_id": draw(maybe(st.just(TENANT))),
            "idempotency_key": draw(maybe(bounded_text(1, 256))),
        }
    )


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with one subtree replaced, removed, or an unknown field added."""
    document = copy.deepcopy(draw(valid_events()))  # mutated below: never a shared object
    node: Any = document
    while isinstance(node, dict) and node and draw(st.booleans()):
        name = draw(st.sampled_from(sorted(node)))
        if not isinstance(node[name], dict) or not node[name]:
            break
        node = node[name]
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    name = draw(st.sampled_from(sorted(node))) if node else "x"
    if action == "replace":
        node[name] = draw(json_values())
    elif action == "delete":
        node.pop(name, None)
    else:
        node[draw(st.text(TEXT, max_size=10))] = draw(json_values())
    return document
