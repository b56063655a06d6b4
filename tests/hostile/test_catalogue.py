"""A catalogue of hostile requests against the running functions.

Each is answered with a 4xx `application/problem+json` that matches openapi.yaml (never a
500), carries `X-Request-Id`, comes within a bound, and leaves the worker serving; at the end,
nothing sent with the hostile key is in the main topic. The boundary cases just inside the
limits are accepted (202) and are in the topic.

Duplicate keys in a JSON object: orjson keeps the last value. For an audit trail that is not
acceptable: the stored record would differ from what any component that reads the first
value saw (a gateway, a WAF, a second parser downstream of the dead-letter topic), the
classic parser-differential. They are refused (400).
"""

from __future__ import annotations

import base64
import gzip
import re
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from audit_ingest.adapters.key_admin import IssuedKey
from audit_ingest.settings import Settings
from tests.hostile.tier import HostileFunctions
from tests.openapi_check import validate_response
from tests.stack import KeyFactory, TopicReader
from tests.unit.samples import seed_event

pytestmark = pytest.mark.e2e

SINGLE, BATCH = "/v1/events", "/v1/events/batch"
MAX_EVENT = 65_536
MAX_BATCH = 5 * 1024 * 1024
REQUEST_ID = r"^[A-Za-z0-9._:-]{1,128}$"
JSON = "application/json"
CE = "application/cloudevents+json"
CE_BATCH = "application/cloudevents-batch+json"
# Answer bounds (seconds): most bodies are small; the multi-megabyte uploads take longer.
QUICK, SLOW = 1.0, 5.0
# Deep nesting must be refused fast (reliability plan S5: "400 in under 50 ms" server side;
# this is measured client side, over loopback, so it carries the client's overhead too).
NESTING_BOUND = 0.25


Body = bytes | Callable[[], bytes | Iterator[bytes]]


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    body: Body  # a callable for bodies too big to build at import, or streamed
    headers: dict[str, str] = field(default_factory=dict)
    statuses: tuple[int, ...] = (400,)
    bound: float = QUICK
    # A field the 400 must name, when the request has one to name.
    names: str | None = None


def event_with(**changes: Any) -> bytes:
    return orjson.dumps(seed_event(**changes))


def structured(**changes: Any) -> dict[str, Any]:
    document = {
        "specversion": "1.0",
        "id": "cat-1",
        "source": "/catalogue",
        "type": "com.example.audit",
        "data": seed_event(),
    }
    document.update(changes)
    return document


BINARY = {"ce-specversion": "1.0", "ce-id": "cat-b", "ce-source": "/cat", "ce-type": "t"}
SEED = orjson.dumps(seed_event())


def padded_event(size: int) -> bytes:
    """A valid event of exactly `size` bytes (context strings within the string limit)."""
    base = seed_event(context={})
    chunks: dict[str, str] = {}
    body = orjson.dumps({**base, "context": chunks})
    index = 0
    while len(body) < size:
        missing = size - len(body)
        name = f"k{index}"
        overhead = len(orjson.dumps({name: ""})) - 2 + (1 if chunks else 0)
        chunks[name] = "x" * max(0, min(8192, missing - overhead))
        body = orjson.dumps({**base, "context": chunks})
        index += 1
    assert len(body) == size, (len(body), size)
    return body


def chunked(total: int, piece: int = 16_384) -> Callable[[], Iterator[bytes]]:
    """`total` bytes as a chunked upload (no Content-Length)."""

    def stream() -> Iterator[bytes]:
        sent = 0
        while sent < total:
            size = min(piece, total - sent)
            sent += size
            yield b"x" * size

    return stream


def gzip_bomb(inflated: int) -> Callable[[], bytes]:
    """A gzip body that inflates to `inflated` bytes of spaces (about 1000:1)."""

    def build() -> bytes:
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        block = b" " * (1024 * 1024)
        parts = [packer.compress(block) for _ in range(inflated // len(block))]
        return b"".join([*parts, packer.flush()])

    return build


def deep(kind: str, depth: int) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


HOSTILE: list[Case] = [
    # nesting
    Case("array-10000-deep", SINGLE, deep("array", 10_000), bound=NESTING_BOUND),
    Case("object-10000-deep", SINGLE, deep("object", 10_000), bound=NESTING_BOUND),
    Case("array-10000-deep-batch", BATCH, deep("array", 10_000), bound=NESTING_BOUND),
    Case("object-10000-deep-batch", BATCH, deep("object", 10_000), bound=NESTING_BOUND),
    Case(
        "context-17-levels",
        SINGLE,
        event_with(context=orjson.loads(deep("object", 15))),
        names="context",
    ),
    # sizes
    Case("string-over-limit", SINGLE, event_with(context={"s": "x" * 8193}), names="context.s"),
    Case("actor-id-257", SINGLE, event_with(actor={"id": "a" * 257}), names="actor.id"),
    Case("body-limit-plus-1", SINGLE, padded_event(MAX_EVENT + 1), statuses=(413,)),
    Case("body-far-over-limit", SINGLE, b"[" + b"1," * 200_000 + b"1]", statuses=(413,)),
    Case(
        "batch-limit-plus-1",
        BATCH,
        lambda: b'{"events": [' + b" " * (MAX_BATCH - 13) + b"]}",
        statuses=(413,),
        bound=SLOW,
    ),
    Case("chunked-over-limit", SINGLE, chunked(MAX_EVENT + 1), statuses=(413,)),
    Case("chunked-20MB-batch", BATCH, chunked(20 * 1024 * 1024), statuses=(413,), bound=SLOW),
    Case(
        "declared-length-over-limit",
        SINGLE,
        SEED,
        headers={"content-length-override": str(MAX_EVENT + 1)},
        statuses=(413,),
    ),
    Case("1001-events", BATCH, orjson.dumps({"events": [seed_event()] * 1001}), names="events"),
    Case(
        "1001-cloudevents",
        BATCH,
        orjson.dumps([structured(id=str(i)) for i in range(1001)]),
        headers={"content-type": CE_BATCH},
    ),
    # encodings
    Case("invalid-utf8", SINGLE, b'{"actor": {"id": "\xff\xfe"}}'),
    Case("overlong-utf8-slash", SINGLE, b'{"actor": {"id": "\xc0\xaf"}}'),
    Case("overlong-utf8-nul", SINGLE, b'{"actor": {"id": "\xe0\x80\x80"}}'),
    Case("utf8-encoded-surrogate", SINGLE, b'{"actor": {"id": "\xed\xa0\x80"}}'),
    Case("lone-high-surrogate-escape", SINGLE, SEED.replace(b"user-123", b"\\ud800")),
    Case("lone-low-surrogate-escape", SINGLE, SEED.replace(b"user-123", b"\\udc00x")),
    Case("utf8-bom", SINGLE, b"\xef\xbb\xbf" + SEED),
    Case("utf16-body", SINGLE, orjson.dumps(seed_event()).decode().encode("utf-16")),
    # numbers
    Case("nan", SINGLE, SEED.replace(b'"result":{', b'"n":NaN,"result":{')),
    Case("infinity", SINGLE, b'{"context": {"n": Infinity}}'),
    Case("minus-infinity", SINGLE, b'{"context": {"n": -Infinity}}'),
    Case("float-1e400", SINGLE, SEED[:-1] + b',"context":{"n":1e400}}'),
    Case("integer-4300-digits", SINGLE, SEED[:-1] + b',"context":{"n":' + b"9" * 4301 + b"}}"),
    Case("integer-5000-digits-top", SINGLE, b"1" * 5000),
    # shapes
    Case("empty-body", SINGLE, b""),
    Case("empty-body-batch", BATCH, b""),
    Case("null", SINGLE, b"null"),
    Case("json-string", SINGLE, b'"an event"'),
    Case("json-number", SINGLE, b"42"),
    Case("json-array", SINGLE, b"[]"),
    Case("null-batch", BATCH, b"null"),
    Case("events-null", BATCH, b'{"events": null}', names="events"),
    Case("events-object", BATCH, b'{"events": {}}', names="events"),
    Case("batch-of-strings", BATCH, b'{"events": ["a", "b"]}'),
    Case(
        "cloudevent-batch-non-objects",
        BATCH,
        orjson.dumps([structured(), 1, "x", None, []]),
        headers={"content-type": CE_BATCH},
    ),
    Case(
        "cloudevent-batch-not-array",
        BATCH,
        orjson.dumps(structured()),
        headers={"content-type": CE_BATCH},
    ),
    Case("cloudevent-not-object", SINGLE, b"[1]", headers={"content-type": CE}),
    Case(
        "cloudevent-missing-id",
        SINGLE,
        orjson.dumps({k: v for k, v in structured().items() if k != "id"}),
        headers={"content-type": CE},
        names="id",
    ),
    Case(
        "data-base64-garbage",
        SINGLE,
        orjson.dumps({**structured(data=None), "data_base64": "!!!not base64!!!"}),
        headers={"content-type": CE},
        names="data_base64",
    ),
    Case(
        "data-base64-not-json",
        SINGLE,
        orjson.dumps(
            {**structured(data=None), "data_base64": base64.b64encode(b"\x00\xff").decode()}
        ),
        headers={"content-type": CE},
        names="data_base64",
    ),
    Case(
        "data-base64-json-array",
        SINGLE,
        orjson.dumps({**structured(data=None), "data_base64": base64.b64encode(b"[1]").decode()}),
        headers={"content-type": CE},
    ),
    Case(
        "data-base64-number",
        SINGLE,
        orjson.dumps({**structured(data=None), "data_base64": 12345}),
        headers={"content-type": CE},
    ),
    Case(
        "cloudevent-datacontenttype-xml",
        SINGLE,
        orjson.dumps(structured(datacontenttype="application/xml")),
        headers={"content-type": CE},
    ),
    Case(
        "cloudevent-specversion-2",
        SINGLE,
        orjson.dumps(structured(specversion="2.0")),
        headers={"content-type": CE},
    ),
    Case(
        "binary-missing-ce-type",
        SINGLE,
        SEED,
        headers={k: v for k, v in BINARY.items() if k != "ce-type"},
        names="ce-type",
    ),
    Case("binary-ce-id-2000", SINGLE, SEED, headers={**BINARY, "ce-id": "i" * 2000}),
    Case("binary-ce-time-garbage", SINGLE, SEED, headers={**BINARY, "ce-time": "yesterday"}),
    Case("tenant-of-another", SINGLE, event_with(tenant_id="t-other"), names="tenant_id"),
    Case("timestamp-far-future", SINGLE, event_with(timestamp="9999-01-01T00:00:00Z")),
    # media types and encodings
    Case("text-plain", SINGLE, SEED, headers={"content-type": "text/plain"}, statuses=(415,)),
    Case("xml", SINGLE, b"<e/>", headers={"content-type": "application/xml"}, statuses=(415,)),
    Case("form", BATCH, b"a=b", headers={"content-type": "multipart/form-data"}, statuses=(415,)),
    Case("no-content-type", SINGLE, SEED, headers={"content-type": ""}, statuses=(415,)),
    Case("ce-batch-on-single", SINGLE, b"[]", headers={"content-type": CE_BATCH}, statuses=(415,)),
    Case(
        "binary-with-ce-content-type",
        SINGLE,
        SEED,
        headers={**BINARY, "content-type": CE},
        statuses=(415,),
    ),
    Case("gzip-garbage", SINGLE, b"not gzip", headers={"content-encoding": "gzip"}),
    Case(
        "gzip-bomb",
        SINGLE,
        gzip_bomb(20 * 1024 * 1024),
        headers={"content-encoding": "gzip"},
        statuses=(413,),
    ),
    Case(
        "gzip-bomb-batch",
        BATCH,
        gzip_bomb(256 * 1024 * 1024),
        headers={"content-encoding": "gzip"},
        statuses=(413,),
        bound=SLOW,
    ),
    Case(
        "gzip-trailing-data",
        SINGLE,
        gzip.compress(SEED) + b"trailing",
        headers={"content-encoding": "gzip"},
    ),
    Case("brotli", SINGLE, SEED, headers={"content-encoding": "br"}, statuses=(415,)),
    # headers
    Case(
        "request-id-10kb",
        SINGLE,
        event_with(actor={"id": 5}),
        headers={"x-request-id": "r" * 10_240},
        names="actor.id",
    ),
    Case("idempotency-key-300", SINGLE, SEED, headers={"idempotency-key": "k" * 300}),
]

# Defects this catalogue found, now fixed: kept as regression cases (they answered 500, or
# 202 where 400 is right; internal email addresses answered 400 where 202 is right).
DEFECTS: list[Any] = [
    *(
        pytest.param(
            Case(
                f"email-{address}",
                SINGLE,
                event_with(actor={"id": "u", "email": address}),
                statuses=(202,),
            ),
            id=f"email-{address}",
        )
        for address in ("svc@corp.local", "root@host.test", '"first last"@example.com')
    ),
    pytest.param(
        Case("timestamp-year-1-offset", SINGLE, event_with(timestamp="0001-01-01T00:00:00+01:00")),
        id="timestamp-year-1-offset",
    ),
    pytest.param(
        Case(
            "ce-time-header-overflow",
            SINGLE,
            SEED,
            headers={**BINARY, "ce-time": "9999-12-31T23:59:59-01:00"},
        ),
        id="ce-time-header-overflow",
    ),
    pytest.param(
        Case(
            "specversion-array",
            SINGLE,
            orjson.dumps(structured(specversion=["1.0"])),
            headers={"content-type": CE},
        ),
        id="specversion-array",
    ),
    pytest.param(
        Case(
            "datacontenttype-number",
            BATCH,
            orjson.dumps([structured(datacontenttype=5)]),
            headers={"content-type": CE_BATCH},
        ),
        id="datacontenttype-number",
    ),
    pytest.param(
        Case(
            "data-base64-non-ascii",
            SINGLE,
            orjson.dumps({**structured(data=None), "data_base64": "é"}),
            headers={"content-type": CE},
        ),
        id="data-base64-non-ascii",
    ),
    pytest.param(
        Case("duplicate-keys", SINGLE, SEED[:-1] + b',"actor":{"id":"mallory"}}'),
        id="duplicate-keys",
    ),
    pytest.param(
        Case(
            "duplicate-keys-nested",
            BATCH,
            orjson.dumps({"events": [seed_event()]})[:-3]
            + b',"resource":{"type":"user","id":"someone-else"}}]}',
        ),
        id="duplicate-keys-nested",
    ),
    pytest.param(
        Case("integer-2-pow-64", SINGLE, SEED[:-1] + b',"context":{"n":18446744073709551616}}'),
        id="integer-2-pow-64",
    ),
    pytest.param(
        Case("integer-30-digits", SINGLE, SEED[:-1] + b',"context":{"n":' + b"9" * 30 + b"}}"),
        id="integer-30-digits",
    ),
]


BOUNDARY: list[Case] = [
    Case("body-exactly-at-limit", SINGLE, padded_event(MAX_EVENT), statuses=(202,)),
    Case("string-at-limit", SINGLE, event_with(context={"s": "x" * 8192}), statuses=(202,)),
    Case("actor-id-256", SINGLE, event_with(actor={"id": "a" * 256}), statuses=(202,)),
    Case(
        "context-16-levels",
        SINGLE,
        event_with(context=orjson.loads(deep("object", 14))),
        statuses=(202,),
    ),
    Case("1000-events", BATCH, orjson.dumps({"events": [seed_event()] * 1000}), statuses=(202,)),
    Case("chunked-valid", SINGLE, lambda: iter([SEED[:10], SEED[10:]]), statuses=(202,)),
    Case(
        "gzip-valid",
        SINGLE,
        gzip.compress(SEED),
        headers={"content-encoding": "gzip"},
        statuses=(202,),
    ),
    Case(
        "request-id-10kb-valid",
        SINGLE,
        SEED,
        headers={"x-request-id": "r" * 10_240},
        statuses=(202,),
    ),
    Case(
        "integers-at-64-bit-bounds",
        SINGLE,
        SEED[:-1] + b',"context":{"max":18446744073709551615,"min":-9223372036854775808}}',
        statuses=(202,),
    ),
    Case(
        "escaped-surrogate-pair",
        SINGLE,
        SEED.replace(b"user-123", b"\\ud83d\\ude00"),
        statuses=(202,),
    ),
    Case("nul-in-string", SINGLE, SEED.replace(b"user-123", b"a\\u0000b"), statuses=(202,)),
]


@pytest.fixture(scope="module")
def hostile_key(issue_session_key: KeyFactory) -> IssuedKey:
    return issue_session_key(name="catalogue-hostile")


@pytest.fixture(scope="module")
def defect_key(issue_session_key: KeyFactory) -> IssuedKey:
    return issue_session_key(name="catalogue-defects")


@pytest.fixture(scope="module")
def boundary_key(issue_session_key: KeyFactory) -> IssuedKey:
    return issue_session_key(name="catalogue-boundary")


def send(hostile: HostileFunctions, case: Case, key: str) -> tuple[httpx.Response, float]:
    headers = {"content-type": JSON, "x-api-key": key, **case.headers}
    declared = headers.pop("content-length-override", None)
    if headers.get("content-type") == "":
        del headers["content-type"]
    body = case.body() if callable(case.body) else case.body
    url = hostile.url_for(case.path) + case.path
    started = time.perf_counter()
    if declared is not None:
        assert isinstance(body, bytes)
        response = raw_request(url, headers, body, declared)
    else:
        with httpx.Client(timeout=30) as client:
            response = client.post(url, content=body, headers=headers)
    return response, time.perf_counter() - started


def raw_request(
    url: str, headers: dict[str, str], body: bytes, content_length: str | None = None
) -> httpx.Response:
    """One HTTP/1.1 request written by hand (what httpx refuses to send: a Content-Length
    that lies, control characters in a header)."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {content_length or len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    received = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head + body)
        while chunk := sock.recv(65_536):
            received += chunk
    head_out, _, content = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head_out.decode("latin-1").split("\r\n")
    pairs = [line.split(":", 1) for line in header_lines if ":" in line]
    return httpx.Response(
        int(status_line.split()[1]),
        headers=[(name.strip(), value.strip()) for name, value in pairs],
        content=content,
    )


def check_answer(case: Case, response: httpx.Response, elapsed: float) -> None:
    assert response.status_code in case.statuses, (case.name, response.text[:300])
    request_id = response.headers.get("x-request-id", "")
    assert re.match(REQUEST_ID, request_id), f"{case.name}: X-Request-Id {request_id[:40]!r}"
    if case.name.startswith("request-id-10kb"):
        assert request_id != case.headers["x-request-id"]
    content_type = response.headers["content-type"]
    body = response.json()
    validate_response(
        "POST", case.path, response.status_code, content_type, body, headers=response.headers
    )
    if response.status_code >= 400:
        assert content_type == "application/problem+json", case.name
        assert body["status"] == response.status_code
        assert body["request_id"] == request_id
    if case.names is not None:
        fields = {error["field"] for error in body.get("errors", [])}
        assert any(f.startswith(case.names) for f in fields), (case.name, fields)
    assert elapsed < case.bound, f"{case.name}: answered in {elapsed:.3f} s"


def check_alive(hostile: HostileFunctions) -> None:
    for function in (hostile.single, hostile.batch):
        assert function.process.poll() is None, f"{function.name} exited"
        assert httpx.get(f"{function.url}/health", timeout=5).status_code == 200


TIMINGS: dict[str, float] = {}
ACCEPTED: dict[str, set[str]] = {}


def record(key: IssuedKey, response: httpx.Response) -> None:
    if response.status_code == 202:
        body = response.json()
        ids = {body["event_id"]} if "event_id" in body else set()
        ids |= {e["event_id"] for e in body.get("events", []) if "event_id" in e}
        ACCEPTED.setdefault(key.stored.tenant_id, set()).update(ids)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in HOSTILE])
def test_hostile_request_is_refused(
    case: Case, hostile: HostileFunctions, hostile_key: IssuedKey
) -> None:
    response, elapsed = send(hostile, case, hostile_key.secret)
    TIMINGS[case.name] = elapsed
    record(hostile_key, response)
    try:
        check_answer(case, response, elapsed)
    finally:
        check_alive(hostile)


@pytest.mark.parametrize("case", DEFECTS)
def test_fixed_defect_stays_fixed(
    case: Case, hostile: HostileFunctions, defect_key: IssuedKey
) -> None:
    response, elapsed = send(hostile, case, defect_key.secret)
    record(defect_key, response)
    try:
        check_answer(case, response, elapsed)
    finally:
        check_alive(hostile)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in BOUNDARY])
def test_request_at_the_limits_is_accepted(
    case: Case, hostile: HostileFunctions, boundary_key: IssuedKey
) -> None:
    response, elapsed = send(hostile, case, boundary_key.secret)
    TIMINGS[case.name] = elapsed
    record(boundary_key, response)
    check_answer(case, response, elapsed)


# Control characters in header values (RFC 9110 allows HTAB and obs-text, nothing else below
# 0x20 nor DEL). httpx refuses to send them, so these requests are written by hand. The HTTP
# server in front of the app (uvicorn) may refuse such a request itself, before the app
# sees it; then the answer is its own plain 400, without problem+json or X-Request-Id: that
# is checked separately and reported, the app never ran.
HEADER_CASES = [
    ("x-request-id", "abc\x01def"),
    ("x-request-id", "abc\x7fdef"),
    ("ce-id", "id\x00x"),
    ("ce-source", "/s\x1b[31m"),
    ("content-type", "application/json\x0b"),
    ("x-api-key", "aik_\x00"),
    ("idempotency-key", "k\x08k"),
    ("ce-subject", "caf\xe9"),  # obs-text: allowed by HTTP, read as Latin-1
]


@pytest.mark.parametrize(("name", "value"), HEADER_CASES, ids=[repr(v) for _, v in HEADER_CASES])
def test_control_characters_in_headers(
    name: str, value: str, hostile: HostileFunctions, hostile_key: IssuedKey
) -> None:
    headers = {"Content-Type": JSON, "X-API-Key": hostile_key.secret}
    if name.startswith("ce-"):
        headers.update(BINARY)
    headers[name] = value
    started = time.perf_counter()
    response = raw_request(hostile.single_url + SINGLE, headers, event_with(actor={"id": 5}))
    elapsed = time.perf_counter() - started
    record(hostile_key, response)
    try:
        assert 400 <= response.status_code < 500, (name, value, response.text[:200])
        assert elapsed < QUICK
        if "x-request-id" in response.headers:  # answered by the app
            statuses = (response.status_code,)
            check_answer(Case(f"header-{name}", SINGLE, b"", statuses=statuses), response, elapsed)
        else:
            SERVER_REFUSED.append(f"{name}={value!r}: {response.status_code} {response.text!r}")
    finally:
        check_alive(hostile)


SERVER_REFUSED: list[str] = []


def test_nothing_hostile_was_written(
    hostile: HostileFunctions,
    settings: Settings,
    hostile_key: IssuedKey,
    boundary_key: IssuedKey,
    defect_key: IssuedKey,
) -> None:
    reader = TopicReader(settings.kafka_bootstrap_servers, hostile.topic)
    try:
        messages = reader.drain()
    finally:
        reader.close()
    stored: dict[str, set[str]] = {}
    for message in messages:
        tenant = (message.key() or b"").decode()
        stored.setdefault(tenant, set()).add(orjson.loads(message.value() or b"")["event_id"])
    assert not stored.get(hostile_key.stored.tenant_id), "a hostile request was stored"
    boundary = boundary_key.stored.tenant_id
    assert stored.get(boundary, set()) == ACCEPTED.get(boundary, set())
    written = len(stored.get(defect_key.stored.tenant_id, set()))
    slowest = sorted(TIMINGS.items(), key=lambda item: -item[1])[:5]
    print(
        f"\ncatalogue: {len(TIMINGS)} requests; slowest: "
        + ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in slowest)
        + f"; known-defect requests stored: {written}"
        + "".join(f"\n  refused by the HTTP server, not the app: {line}" for line in SERVER_REFUSED)
    )
