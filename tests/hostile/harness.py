"""The pure request pipeline under hostile input: bytes in, parsed, validated, enriched.

Shared by the Hypothesis properties (`test_properties.py`), the atheris target
(`fuzz_parse.py`) and its smoke test. No I/O: this is exactly what a function does with a
request between reading its body and handing records to the producer, minus the producer.

A fuzz input is written like a tiny HTTP request, so the seed corpus stays readable and the
fuzzer can mutate headers as well as the body:

    POST /v1/events/batch
    content-type: application/cloudevents-batch+json
    <empty line>
    [{"specversion": "1.0", ...}]

An input without an empty line is a body for `POST /v1/events` as `application/json`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from audit_ingest.domain.enrichment import Processing, RequestContext
from audit_ingest.domain.envelope import Envelope
from audit_ingest.domain.limits import Limits
from audit_ingest.domain.pipeline import Rules, prepare_event
from audit_ingest.domain.principal import Principal
from audit_ingest.errors import AuditError, InvalidEvent
from audit_ingest.http.body import decode_content
from audit_ingest.http.parsing import parse_batch, parse_single

LIMITS = Limits()
TENANT = "7a1c9d0e-1111-4111-8111-111111111111"
PRINCIPAL = Principal(TENANT, "0b7e5f3c-2222-4222-8222-222222222222", ("events:write",), 100)
PROCESSING = Processing(node="fuzz", function="fuzz", revision="fuzz", version="0")
RULES = Rules(limits=LIMITS, processing=PROCESSING, topic="audit.events.v1")
# Every input must be handled (accepted or refused) within this bound.
MAX_SECONDS = 0.100
SINGLE, BATCH = "/v1/events", "/v1/events/batch"


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Result:
    """What the pipeline made of one request."""

    accepted: int = 0
    rejected: int = 0
    refused: AuditError | None = None  # the whole request refused (400/413/415)
    seconds: float = 0.0


def split_request(data: bytes) -> Request:
    """Read the fuzz input format described in the module docstring."""
    head, separator, body = data.partition(b"\n\n")
    if not separator:
        return Request(SINGLE, {"content-type": "application/json"}, data)
    lines = head.decode("latin-1").split("\n")
    path = BATCH if lines and lines[0].strip().endswith(BATCH) else SINGLE
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return Request(path, headers, body)


def process(request: Request, *, now: datetime | None = None) -> Result:
    """Run one request through decode, parse and the per-event pipeline (`prepare_event`).

    Raises only when the library raises something other than an `AuditError` (a defect).
    """
    started = time.perf_counter()
    received_at = now or datetime.now(UTC)
    result = Result()
    batch = request.path == BATCH
    limit = LIMITS.max_batch_body_bytes if batch else LIMITS.max_event_bytes
    try:
        body = decode_content(request.body, request.headers.get("content-encoding"), limit)
        envelopes = (
            parse_batch(request.headers, body, max_events=LIMITS.max_batch_events)
            if batch
            else [parse_single(request.headers, body)]
        )
    except AuditError as refused:
        result.refused = refused
    else:
        for envelope in envelopes:
            if validate_and_enrich(envelope, received_at, request.headers) is None:
                result.rejected += 1
            else:
                result.accepted += 1
    result.seconds = time.perf_counter() - started
    return result


def process_timed(request: Request) -> Result:
    """`process`; an input over the bound is run again, and its best time is kept.

    A single slow run can be a garbage collection or another process taking the CPU (the
    machine is shared); an input that is slow twice is slow.
    """
    result = process(request)
    if result.seconds > MAX_SECONDS:
        again = process(request)
        result.seconds = min(result.seconds, again.seconds)
    return result


def validate_and_enrich(
    envelope: Envelope, received_at: datetime, headers: Mapping[str, str] | None = None
) -> bytes | None:
    """The record value of an accepted event (the service's own per-event pipeline); None
    when the event is invalid."""
    context = RequestContext("fuzz", received_at, "127.0.0.1", "fuzz")
    try:
        record = prepare_event(
            envelope,
            event_id="01a21fa8-395e-7993-a50f-c7757c8f05d3",
            principal=PRINCIPAL,
            request=context,
            rules=RULES,
            request_key=(headers or {}).get("idempotency-key"),
        )
    except InvalidEvent as invalid:
        check_field_errors(envelope.payload, invalid)
        return None
    return record.value


def check_field_errors(payload: object, invalid: InvalidEvent) -> None:
    """Every InvalidEvent names where: a field path rooted in the event, or "" for the whole
    event when it is not a JSON object."""
    assert invalid.errors, "an InvalidEvent without errors"
    for error in invalid.errors:
        assert error.code and error.message, error
        if not isinstance(payload, dict):
            assert error.field == "" and error.code == "type", error
            continue
        if error.field == "":  # the contract reserves "" for the whole event
            assert error.code == "event_too_large", error
            continue
        # A key that reads as a path (empty, or holding . [ ] ") is quoted: ["a.b"].
        quoted = {name for name in payload if not name or any(c in name for c in '.[]"')}
        roots = [
            *(name for name in payload if name not in quoted),
            *("[" + orjson.dumps(name).decode() + "]" for name in quoted),
            "actor",
            "action",
            "resource",
        ]
        assert any(
            error.field == root or error.field.startswith((f"{root}.", f"{root}["))
            for root in roots
        ), f"the error does not name a field of the event: {error}"


# -- defects found by this suite --------------------------------------------------------------
#
# All fixed (timestamp overflow, non-string CloudEvent attributes, non-ASCII data_base64,
# duplicate keys, integers beyond 64 bits, internal email addresses, unquoted paths); each is
# a regression test in test_properties.py and test_catalogue.py. A new one goes here, with an
# xfail(strict=True) test that reproduces it: the properties and the fuzzer tolerate exactly
# the exceptions listed, raised from exactly the sites named, and nothing else.


@dataclass(frozen=True)
class KnownDefect:
    name: str
    what: str
    matches: Callable[[BaseException], bool]


KNOWN_DEFECTS: tuple[KnownDefect, ...] = ()


def known_defect(exc: BaseException) -> KnownDefect | None:
    return next((defect for defect in KNOWN_DEFECTS if defect.matches(exc)), None)


def replay(path: str, headers: Mapping[str, str], body: bytes) -> KnownDefect | None:
    """The known defect this request runs into in the pure pipeline, if any.

    Used to tell a 500 from the running service apart: a 500 whose request raises a known
    defect's exception here is that defect; any other 500 is a new finding.
    """
    request = Request(path, {name.lower(): value for name, value in headers.items()}, body)
    try:
        process(request)
    except Exception as exc:
        return known_defect(exc)
    return None
