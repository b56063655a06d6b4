"""The compiled accept path (native/, `domain.compiled`) decides and writes as the Python pipeline.

The Python pipeline is the reference. For every generated event (valid ones, and ones wrong in
every field at once), `check_event` with the compiled path gives exactly what it gives without:
the same refusal with the same errors, or the same record (key, headers, value bytes), retry
key and fingerprint. The compiled path may decline an event (the Python pipeline then runs), but
never accepts one the Python pipeline refuses, and never writes a byte differently. A second
set of tests fails if the compiled path stops accepting the events users send (a silent fall
back to Python would pass the first set and lose the speed).
"""

from __future__ import annotations

import asyncio
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import audit_ingest_native as native
import orjson
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from audit_ingest.domain import model
from audit_ingest.domain.compiled import CompiledEvent, check_compiled
from audit_ingest.domain.enrichment import Processing, RequestContext
from audit_ingest.domain.envelope import CloudEventOrigin, Envelope
from audit_ingest.domain.limits import Limits
from audit_ingest.domain.pipeline import (
    Rules,
    build_event_record,
    build_event_records,
    check_event,
    check_events,
)
from audit_ingest.domain.timestamps import format_rfc3339_ms, parse_rfc3339
from audit_ingest.domain.validation import ValidEvent
from audit_ingest.errors import InvalidEvent
from tests.unit.fakes import FakePublisher
from tests.unit.samples import PRINCIPAL, make_service, seed_event

pytestmark = pytest.mark.unit

# A receive time with microseconds: the future-skew boundary falls between milliseconds.
NOW = datetime(2026, 12, 2, 18, 30, 15, 123_456, tzinfo=UTC)
PROCESSING = Processing("node-1", "ingest-batch", "rev-1", "0.1.0")
EVENT_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"

# -- strategies ---------------------------------------------------------------------------

# Text of every kind: control characters, quotes, backslashes, non-ASCII, astral planes (no
# lone surrogates: JSON parsing never makes them).
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
texts = st.one_of(
    st.text(string.ascii_letters + string.digits + ".-_", min_size=1, max_size=12),
    any_text,
    st.sampled_from([0, 1, 255, 256, 257, 2048, 2049]).map(lambda n: "é" * n),
)
# Mostly text, sometimes every other JSON type (pydantic's strict mode refuses them).
field_values = st.one_of(
    texts, texts, texts, st.none(), st.booleans(), st.integers(-5, 5), st.floats(0, 1)
)
emails = st.sampled_from(
    [
        "user@example.com",
        "svc@corp.local",
        "root@localhost",
        "a@[10.0.0.1]",
        '"quoted local"@example.com',
        "not-an-email",
        "@example.com",
        "a@",
        "a b@example.com",
        "ü@exämple.com",
        "x" * 64 + "@example.com",
        "x" * 65 + "@example.com",
        "a@" + "b" * 320 + ".com",
    ]
)
int64 = st.integers(-(2**63), 2**64 - 1)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    int64,
    st.integers(-1000, 1000),
    any_text,
    # About the free-form limit (`limits` below: 16 or 24 characters).
    st.text(st.characters(exclude_categories=["Cs"]), min_size=14, max_size=26),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)
    ),
    max_leaves=20,
)
# JSON values without floats (the compiled path writes every other value itself).
plain_json = st.recursive(
    st.one_of(st.none(), st.booleans(), int64, any_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(any_text, inner, max_size=3)
    ),
    max_leaves=12,
)
# Microseconds after NOW: anywhere in the window, or about its end (300 s of future skew).
after_now = st.one_of(
    st.integers(-(10**6), 400 * 10**6), st.integers(299_990_000, 300_010_000)
).map(lambda us: NOW + timedelta(microseconds=us))


def rfc3339(moment: datetime, *, fraction: int, offset_minutes: int, sep: str = "T") -> str:
    local = moment + timedelta(minutes=offset_minutes)
    text = local.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if fraction:
        text += "." + f"{local.microsecond:06d}{local.microsecond % 997:03d}"[:fraction]
    if offset_minutes == 0:
        return text + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


near_now = st.builds(
    rfc3339,
    after_now,
    fraction=st.sampled_from([0, 1, 3, 3, 6, 7, 9]),
    offset_minutes=st.sampled_from([0, 0, 60, -300, 330, 23 * 60 + 59, -(23 * 60 + 59)]),
    sep=st.sampled_from(["T", "T", "t", " "]),
)
# Any shape of digits in the RFC 3339 places, to reach impossible dates and offsets.
shaped = st.builds(
    "{:04d}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}{}{}".format,
    st.integers(0, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.sampled_from(["T", "t", " ", "x"]),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.sampled_from(["", ".", ".5", ".123", ".1234567890", ".12345678"]),
    st.sampled_from(["Z", "z", "+00:00", "-00:00", "+23:59", "-23:59", "+24:00", "+05:60", ""]),
)
timestamps = st.one_of(
    near_now,
    near_now,
    shaped,
    st.sampled_from(
        [
            format_rfc3339_ms(NOW),
            format_rfc3339_ms(NOW + timedelta(seconds=300)),
            format_rfc3339_ms(NOW + timedelta(seconds=300, milliseconds=1)),
            "2024-12-05T10:00:00Z\n",
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:30:00-01:00",
            "2024-02-29T00:00:00Z",
            "2023-02-29T00:00:00Z",
        ]
    ),
    any_text,
    int64,
)


def block(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A structured block: its fields often present, sometimes missing, null or unknown."""
    return st.fixed_dictionaries({}, optional={**required, **optional, "unknown": st.just("x")})


actors = st.one_of(
    block({"id": field_values}, {"type": field_values, "name": field_values, "email": emails}),
    st.fixed_dictionaries({"id": texts}, optional={"type": texts, "email": emails, "name": texts}),
    field_values,
)
actions = st.one_of(
    st.fixed_dictionaries(
        {"name": st.one_of(texts, st.sampled_from(["User.Created", "ÀÉÎ.Ω", "İ.ß", "Σ"]))}
    ),
    block({"name": field_values}, {}),
    field_values,
)
resources = st.one_of(
    st.fixed_dictionaries({"type": texts, "id": texts}, optional={"name": texts}),
    block({"type": field_values, "id": field_values}, {"name": field_values}),
)
results = st.one_of(
    st.fixed_dictionaries({"success": st.booleans()}, optional={"code": texts, "message": texts}),
    block(
        {"success": st.one_of(st.booleans(), st.integers(0, 1), st.none())},
        {
            "code": field_values,
            "message": field_values,
        },
    ),
    field_values,
)
events = st.fixed_dictionaries(
    {},
    optional={
        "actor": actors,
        "action": actions,
        "resource": resources,
        "timestamp": st.one_of(timestamps, st.none()),
        "result": results,
        "context": st.one_of(st.dictionaries(any_text, json_values, max_size=4), json_values),
        "metadata": st.one_of(st.dictionaries(any_text, plain_json, max_size=4), json_values),
        "tenant_id": st.sampled_from([PRINCIPAL.tenant_id, "t-2", None, 5]),
        "idempotency_key": st.one_of(texts, st.none(), int64),
        "extra": st.just(1),
    },
)
limits = st.builds(
    Limits,
    max_event_bytes=st.sampled_from([150, 300, 600, 65_536]),
    max_depth=st.integers(2, 6),
    max_string_length=st.sampled_from([16, 24, 8192]),
    max_future_skew_seconds=st.sampled_from([0, 300]),
)
origins = st.one_of(
    st.none(),
    st.builds(
        CloudEventOrigin,
        id=texts,
        source=texts,
        type=texts,
        time=st.one_of(st.none(), near_now, st.just("")),
        subject=st.one_of(st.none(), any_text),
    ),
)
requests = st.builds(
    RequestContext,
    request_id=st.one_of(st.just("req-1"), any_text),
    received_at=st.just(NOW),
    client_ip=st.one_of(st.none(), st.just("203.0.113.7")),
    user_agent=st.one_of(st.none(), any_text),
)

# -- the comparison -----------------------------------------------------------------------


def outcome(
    payload: object,
    *,
    origin: CloudEventOrigin | None,
    request: RequestContext,
    limits: Limits,
    request_key: str | None,
    compiled: bool,
) -> tuple[Any, ...]:
    """What `check_event` then `build_event_record` give: the refusal, or the record."""
    envelope = Envelope(payload=payload, origin=origin)
    rules = Rules(limits=limits, processing=PROCESSING, topic="audit.events.v1", compiled=compiled)
    try:
        checked = check_event(
            envelope,
            principal=PRINCIPAL,
            request=request,
            limits=limits,
            request_key=request_key,
            compiled=compiled,
        )
    except InvalidEvent as refused:
        return ("refused", refused.errors)
    record = build_event_record(
        checked, event_id=EVENT_ID, principal=PRINCIPAL, request=request, rules=rules
    )
    return ("accepted", record, checked.retry_key, checked.fingerprint)


def as_parsed(value: object) -> object:
    """The value as the request parser hands it over (orjson's objects, in order)."""
    return orjson.loads(orjson.dumps(value))


# -- the compiled path is taken for what users send ----------------------------------------

usual_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
usual_events = st.fixed_dictionaries(
    {
        "actor": st.fixed_dictionaries(
            {"id": usual_text},
            optional={
                "type": usual_text,
                "email": st.sampled_from(["user@example.com", "svc@corp.local"]),
                "name": usual_text,
            },
        ),
        "action": st.fixed_dictionaries({"name": st.text(string.printable, min_size=1)}),
        "resource": st.fixed_dictionaries(
            {"type": usual_text, "id": usual_text}, optional={"name": usual_text}
        ),
    },
    optional={
        "timestamp": st.builds(
            rfc3339,
            st.integers(-86_400 * 10**6, 0).map(lambda us: NOW + timedelta(microseconds=us)),
            fraction=st.sampled_from([0, 3, 6, 9]),
            offset_minutes=st.sampled_from([0, 120, -480]),
        ),
        "result": st.fixed_dictionaries(
            {"success": st.booleans()}, optional={"code": usual_text, "message": usual_text}
        ),
        "context": st.dictionaries(usual_text, plain_json, max_size=5),
        "metadata": st.dictionaries(usual_text, plain_json, max_size=5),
        "tenant_id": st.just(PRINCIPAL.tenant_id),
        "idempotency_key": usual_text,
    },
)


DELETE = object()
MUTABLE = [
    ("actor",),
    ("actor", "id"),
    ("actor", "type"),
    ("actor", "email"),
    ("actor", "name"),
    ("actor", "unknown"),
    ("action",),
    ("action", "name"),
    ("resource", "type"),
    ("resource", "id"),
    ("resource", "name"),
    ("result",),
    ("result", "success"),
    ("result", "code"),
    ("result", "message"),
    ("timestamp",),
    ("tenant_id",),
    ("idempotency_key",),
    ("context",),
    ("metadata",),
    ("unknown",),
]
mutations = st.lists(
    st.tuples(
        st.sampled_from(MUTABLE),
        st.one_of(field_values, timestamps, emails, json_values, st.just(DELETE)),
    ),
    max_size=2,
)


def mutated(event: dict[str, Any], changes: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    """A usual event with a field or two replaced (by anything) or removed."""
    for path, value in changes:
        parent: Any = event
        for name in path[:-1]:
            parent = parent.get(name) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if value is DELETE:
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = value
    return event


# Usual events, a field or two wrong; events wrong everywhere; any JSON value.
payloads = st.one_of(
    st.builds(mutated, usual_events, mutations),
    st.builds(mutated, usual_events, mutations),
    st.builds(lambda event, at: {**event, "timestamp": at}, usual_events, near_now),
    events,
    json_values,
)


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(payloads, origins, requests, limits, st.one_of(st.none(), texts))
@example(seed_event(), None, RequestContext("r", NOW), Limits(), None)
def test_the_compiled_path_decides_and_writes_as_the_python_pipeline(
    payload: object,
    origin: CloudEventOrigin | None,
    request: RequestContext,
    limits: Limits,
    request_key: str | None,
) -> None:
    payload = as_parsed(payload)
    arguments: dict[str, Any] = dict(
        origin=origin, request=request, limits=limits, request_key=request_key
    )
    python = outcome(payload, compiled=False, **arguments)
    assert outcome(payload, compiled=True, **arguments) == python
    [accepted] = check_compiled(
        [Envelope(payload=payload, origin=origin)],
        principal=PRINCIPAL,
        request=request,
        limits=limits,
    )
    if accepted is not None:  # the compiled path never accepts what Python refuses
        assert python[0] == "accepted"
    # How often each case occurs (pytest --hypothesis-show-statistics).
    event(f"python {python[0]}, compiled {'accepted' if accepted else 'declined'}")


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(usual_events)
def test_events_users_send_take_the_compiled_path(payload: dict[str, Any]) -> None:
    payload = as_parsed(payload)  # type: ignore[assignment]
    request = RequestContext("req-1", NOW, client_ip="203.0.113.7", user_agent="sdk/1.0")
    envelope = Envelope(payload=payload)
    checked = check_event(envelope, principal=PRINCIPAL, request=request, limits=Limits())
    assert isinstance(checked.valid, CompiledEvent)
    reference = check_event(
        envelope, principal=PRINCIPAL, request=request, limits=Limits(), compiled=False
    )
    assert isinstance(reference.valid, ValidEvent)
    rules = Rules(Limits(), PROCESSING, "audit.events.v1")
    built = [
        build_event_record(c, event_id=EVENT_ID, principal=PRINCIPAL, request=request, rules=rules)
        for c in (checked, reference)
    ]
    assert built[0] == built[1]
    assert orjson.loads(built[0].value)["event_id"] == EVENT_ID


def padded(size: int) -> dict[str, Any]:
    """The seed's event padded to exactly `size` bytes of compact JSON."""
    event = seed_event(context={"pad": ""})
    missing = size - len(orjson.dumps(event))
    return seed_event(context={"pad": "x" * missing})


LATEST = NOW + timedelta(seconds=300)  # Limits()'s future skew
# (event, limits, accepted by both): each rule at its bound, then one past it.
BOUNDS = {
    "timestamp at the latest": (seed_event(timestamp=format_rfc3339_ms(LATEST)), True),
    "timestamp 1 ms past": (
        seed_event(timestamp=format_rfc3339_ms(LATEST + timedelta(milliseconds=1))),
        False,
    ),
    "timestamp 1 us past": (
        seed_event(timestamp=(LATEST + timedelta(microseconds=1)).isoformat()),
        False,
    ),
    "no fraction, at the second": (
        seed_event(timestamp=LATEST.replace(microsecond=0).isoformat()),
        True,
    ),
    "size at the limit": (padded(1024), True),
    "size 1 past": (padded(1025), False),
    "actor.id 256": (seed_event(actor={"id": "\U0001f600" * 256}), True),
    "actor.id 257": (seed_event(actor={"id": "\U0001f600" * 257}), False),
    "actor.id empty": (seed_event(actor={"id": ""}), False),
    "action.name 256": (seed_event(action={"name": "A" * 256}), True),
    "action.name 257": (seed_event(action={"name": "A" * 257}), False),
    "resource.name empty": (seed_event(resource={"type": "t", "id": "i", "name": ""}), False),
    "result.message 2048": (seed_event(result={"success": True, "message": "é" * 2048}), True),
    "result.message 2049": (seed_event(result={"success": True, "message": "é" * 2049}), False),
    "result.message empty": (seed_event(result={"success": False, "message": ""}), True),
    "result.success 1": (seed_event(result={"success": 1}), False),
    "email 320": (seed_event(actor={"id": "a", "email": "u@" + "a" * 63 + ".com"}), True),
    "email invalid": (seed_event(actor={"id": "a", "email": "not-an-email"}), False),
    "idempotency_key 256": (seed_event(idempotency_key="k" * 256), True),
    "idempotency_key 257": (seed_event(idempotency_key="k" * 257), False),
    "idempotency_key empty": (seed_event(idempotency_key=""), False),
    "tenant_id the key's": (seed_event(tenant_id=PRINCIPAL.tenant_id), True),
    "tenant_id another": (seed_event(tenant_id="t-2"), False),
    "context string at the limit": (seed_event(context={"s": "x" * 24}), True),
    "context string 1 past": (seed_event(context={"s": ["x" * 25]}), False),
    "context key longer than the limit": (seed_event(context={"k" * 30: 1}), True),
    "context at the depth": (seed_event(context={"a": {"b": {"c": 1}}}), True),
    "context 1 deeper": (seed_event(context={"a": {"b": {"c": {"d": 1}}}}), False),
    "context empty list at the depth": (seed_event(context={"a": {"b": {"c": []}}}), True),
    "metadata not an object": (seed_event(metadata=[1]), False),
    "unknown field": (seed_event(actions={"name": "x"}), False),
    "unknown actor field": (seed_event(actor={"id": "a", "mail": "x"}), False),
    "null optional fields": (
        seed_event(result=None, context=None, metadata=None, timestamp=None, tenant_id=None),
        True,
    ),
    "null required field": (seed_event(resource={"type": "t", "id": None}), False),
}
BOUND_LIMITS = Limits(max_depth=5, max_string_length=24)
SIZE_LIMITS = Limits(max_event_bytes=1024)


@pytest.mark.parametrize(("event", "accepted"), BOUNDS.values(), ids=BOUNDS.keys())
def test_each_rule_at_its_bound(event: dict[str, Any], accepted: bool) -> None:
    """Both paths agree at each bound and one past it, and the compiled path takes the event
    exactly when it is accepted (none of these shapes is one it declines)."""
    limits = SIZE_LIMITS if "pad" in (event.get("context") or {}) else BOUND_LIMITS
    request = RequestContext("req-1", NOW)
    arguments: dict[str, Any] = dict(origin=None, request=request, limits=limits, request_key=None)
    python = outcome(as_parsed(event), compiled=False, **arguments)
    assert python[0] == ("accepted" if accepted else "refused")
    assert outcome(as_parsed(event), compiled=True, **arguments) == python
    [taken] = check_compiled(
        [Envelope(payload=as_parsed(event))], principal=PRINCIPAL, request=request, limits=limits
    )
    assert (taken is not None) == accepted


@pytest.mark.parametrize(
    "event",
    [
        seed_event(context={"ratio": 0.5}),
        seed_event(metadata={"n": [1, 2.5e16]}),
    ],
    ids=["float in context", "float in metadata"],
)
def test_what_the_compiled_path_declines_python_accepts_and_writes(event: dict[str, Any]) -> None:
    request = RequestContext("req-1", NOW)
    envelope = Envelope(payload=as_parsed(event))
    assert check_compiled([envelope], principal=PRINCIPAL, request=request, limits=Limits()) == [
        None
    ]
    checked = check_event(envelope, principal=PRINCIPAL, request=request, limits=Limits())
    assert isinstance(checked.valid, ValidEvent)


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-12-05T10:00:00+05:60",
        "2024-12-05T10:00:00Z\n",
        "\uff12\uff10\uff12\uff14-12-05T10:00:00Z",
    ],
    ids=["offset minutes 60", "trailing newline", "full-width digits"],
)
def test_what_is_not_rfc3339_is_refused_both_ways(timestamp: str) -> None:
    """Python's reading once took these (a regex's `$` and `\\d`, fromisoformat's offsets),
    and the compiled path declined them; both paths now refuse them."""
    request = RequestContext("req-1", NOW)
    envelope = Envelope(payload=seed_event(timestamp=timestamp))
    for compiled in (True, False):
        with pytest.raises(InvalidEvent) as refused:
            check_event(
                envelope, principal=PRINCIPAL, request=request, limits=Limits(), compiled=compiled
            )
        assert [(e.field, e.code) for e in refused.value.errors] == [
            ("timestamp", "invalid_timestamp")
        ]


def test_compiled_off_in_the_rules_runs_python_only() -> None:
    request = RequestContext("req-1", NOW)
    envelope = Envelope(payload=seed_event())
    off = check_event(
        envelope, principal=PRINCIPAL, request=request, limits=Limits(), compiled=False
    )
    on = check_event(envelope, principal=PRINCIPAL, request=request, limits=Limits())
    assert isinstance(off.valid, ValidEvent)
    assert isinstance(on.valid, CompiledEvent)


def test_a_full_batch_gives_the_same_records_both_ways() -> None:
    """1000 events of one request (the batch limit): one checker and one record frame serve
    all of them, and every record matches Python's."""
    events = [
        seed_event(
            actor={"id": f"user-{n}", "email": f"u{n % 7}@example.com"},
            timestamp=format_rfc3339_ms(NOW - timedelta(seconds=n)),
            context={"n": n, "tags": ["a", "é", '"q"'], "nested": {"ok": n % 2 == 0}},
            idempotency_key=f"k-{n}" if n % 3 else None,
        )
        for n in range(1000)
    ]
    published = []
    for compiled in (True, False):
        publisher = FakePublisher()
        service = make_service(publisher, compiled=compiled)
        request = RequestContext("req-batch", NOW, client_ip="203.0.113.7", user_agent="ua")
        outcomes = asyncio.run(
            service.ingest([Envelope(payload=as_parsed(e)) for e in events], PRINCIPAL, request)
        )
        assert len(outcomes) == 1000
        published.append(publisher.published)
    assert len(published[0]) == 1000
    assert published[0] == published[1]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(st.tuples(payloads, origins), min_size=1, max_size=40),
    requests,
    limits,
    st.one_of(st.none(), texts),
)
def test_a_requests_events_checked_together_are_each_decided_alone(
    events: list[tuple[object, CloudEventOrigin | None]],
    request: RequestContext,
    limits: Limits,
    request_key: str | None,
) -> None:
    """`check_events` and `build_event_records` over a request's events (valid, refused,
    declined, CloudEvents with readable and unreadable times, mixed): each event's decision,
    errors and record bytes are what it gets alone."""
    envelopes = [Envelope(payload=as_parsed(payload), origin=origin) for payload, origin in events]
    rules = Rules(limits=limits, processing=PROCESSING, topic="audit.events.v1")
    together = check_events(
        envelopes, principal=PRINCIPAL, request=request, limits=limits, request_key=request_key
    )
    accepted = [
        (checked, f"{EVENT_ID[:-2]}{n:02d}")
        for n, checked in enumerate(together)
        if not isinstance(checked, InvalidEvent)
    ]
    records = iter(build_event_records(accepted, principal=PRINCIPAL, request=request, rules=rules))
    for envelope, checked in zip(envelopes, together, strict=True):
        if isinstance(checked, InvalidEvent):
            with pytest.raises(InvalidEvent) as refused:
                check_event(
                    envelope,
                    principal=PRINCIPAL,
                    request=request,
                    limits=limits,
                    request_key=request_key,
                )
            assert checked.errors == refused.value.errors
            continue
        alone = check_event(
            envelope, principal=PRINCIPAL, request=request, limits=limits, request_key=request_key
        )
        assert checked == alone
        record = next(records)
        event_id = record.headers[1][1].decode()
        assert record == build_event_record(
            alone, event_id=event_id, principal=PRINCIPAL, request=request, rules=rules
        )
    assert next(records, None) is None


def test_a_cloudevent_time_python_cannot_read_is_left_to_python() -> None:
    """The parser refuses such a `time`; should one reach the pipeline, the compiled path
    must not stand the request's time in for it (Python raises on it)."""
    request = RequestContext("req-1", NOW)
    origin = CloudEventOrigin(id="1", source="/s", type="t", time="not a time")
    envelopes = [Envelope(payload=seed_event()), Envelope(payload=seed_event(), origin=origin)]
    taken = check_compiled(envelopes, principal=PRINCIPAL, request=request, limits=Limits())
    assert taken[0] is not None
    assert taken[1] is None
    with pytest.raises(ValueError, match="not an RFC 3339 date-time"):
        check_events(envelopes, principal=PRINCIPAL, request=request, limits=Limits())


def test_check_many_wants_one_default_time_per_event() -> None:
    checker = native.Checker(
        tenant_id="t",
        received_text=format_rfc3339_ms(NOW),
        latest=0,
        max_depth=8,
        max_string_length=10,
        max_event_bytes=100,
        check_email=model.checked_email,
    )
    with pytest.raises(ValueError, match="one entry per payload"):
        checker.check_many([{}, {}], [None])


# -- the parts, each against its Python original -------------------------------------------


@settings(max_examples=3000, deadline=None)
@given(st.text(st.characters(exclude_categories=["Cs"])))
@example("".join(chr(c) for c in range(0x80)) + "\u2028\u2029\ufeff\U0001f600")
def test_strings_are_escaped_as_orjson_escapes_them(text: str) -> None:
    assert native.dumps_str(text) == orjson.dumps(text)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(near_now, shaped, any_text))
@example("2024-12-05T10:00:00Z\n")
@example("0001-01-01T00:30:00+01:00")
@example("9999-12-31T23:30:00-01:00")
@example("\uff12\uff10\uff12\uff14-12-05T10:00:00Z")  # full-width digits
@example("2024-12-05T10:00:00+05:60")
def test_timestamps_are_read_as_python_reads_them(text: str) -> None:
    """The same texts read, to the same time: the compiled path declines none Python reads."""
    compiled = native.parse_timestamp(text)
    try:
        moment = parse_rfc3339(text)
    except ValueError:
        assert compiled is None
        return
    assert compiled is not None
    micros, formatted = compiled
    assert micros == (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert formatted == format_rfc3339_ms(moment)


def model_rules() -> dict[str, Any]:
    """What the compiled path must apply, read from the model's JSON schema (openapi.yaml's)."""
    schema = model.AuditEventIn.model_json_schema()
    rules: dict[str, Any] = {"event": list(schema["properties"])}
    for block, definition in (
        ("actor", "Actor"),
        ("action", "Action"),
        ("resource", "Resource"),
        ("result", "Result"),
    ):
        spec = schema["$defs"][definition]
        fields = []
        for name, prop in spec["properties"].items():
            (shape,) = [v for v in prop.get("anyOf", [prop]) if v.get("type") != "null"]
            kind = {"boolean": "bool", "string": "text"}[shape["type"]]
            if shape.get("format") == "email":
                kind = "email"
            fields.append(
                (
                    name,
                    kind,
                    shape.get("minLength", 0),
                    shape.get("maxLength", 0),
                    name in spec.get("required", ()),
                )
            )
        rules[block] = fields
    return rules


def test_the_compiled_rules_are_the_models() -> None:
    """Every field, in order, with its kind, bounds and whether it is required: a field added
    to model.py, or a bound changed there, fails here until native/src/lib.rs follows."""
    assert native.schema() == model_rules()


def test_the_fixed_bounds_are_the_models() -> None:
    assert native.MAX_ID_LENGTH == model.MAX_ID_LENGTH
    assert native.MAX_NAME_LENGTH == model.MAX_NAME_LENGTH
    assert native.MAX_MESSAGE_LENGTH == model.MAX_MESSAGE_LENGTH
    assert native.MAX_EMAIL_LENGTH == model.MAX_EMAIL_LENGTH
    assert native.MAX_IDEMPOTENCY_KEY_LENGTH == model.MAX_IDEMPOTENCY_KEY_LENGTH
