"""openapi.yaml against the code.

The document is valid OpenAPI 3.1; every answer the in-process app gives (fake adapters, no I/O)
matches what the document declares for its operation, status and content type, headers
included; every status the document declares is reached by some scenario here, or is listed in
`NOT_EXERCISED` with the reason; the event schema and the limits agree with the code's.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from audit_ingest.bootstrap import IngestApp, build_app
from audit_ingest.domain.keys import format_key, hash_key
from audit_ingest.domain.limits import Limits
from audit_ingest.domain.model import AuditEventIn
from audit_ingest.http.endpoint import serve
from audit_ingest.http.routes import Endpoint
from audit_ingest.ports import Delivery
from audit_ingest.service import MAX_ERRORS_PER_EVENT
from audit_ingest.settings import Settings
from tests.openapi_check import (
    HTTP_METHODS,
    check_against,
    deref,
    load_spec,
    media_type,
    normalise_path,
    operation_pointer,
    resolve_pointer,
    validate_response,
)
from tests.unit.fakes import FakeIdempotencyStore, FakeKeyStore, FakeLimiter, FakePublisher
from tests.unit.samples import seed_event, stored

ROOT = Path(__file__).resolve().parents[2]
SINGLE = "/v1/events"
BATCH = "/v1/events/batch"
JSON = "application/json"
PROBLEM = "application/problem+json"
CE = "application/cloudevents+json"
CE_BATCH = "application/cloudevents-batch+json"
BINARY_HEADERS = (
    ("ce-specversion", "1.0"),
    ("ce-id", "evt-binary-1"),
    ("ce-source", "/apps/user-service"),
    ("ce-type", "com.example.audit.user"),
)
REQUEST_ID = "openapi-test:1"

KEY = format_key(b"\x07" * 32)
REVOKED = format_key(b"\x08" * 32)
EXPIRED = format_key(b"\x0a" * 32)
NO_SCOPE = format_key(b"\x0b" * 32)
UNKNOWN = format_key(b"\x09" * 32)

# Documented statuses that no scenario reaches without real services or unreleased features.
# Each entry says why. An entry that a scenario now reaches, or that the document no longer
# declares, fails `test_every_documented_status_is_exercised`, so the list cannot go stale.
NOT_EXERCISED: dict[tuple[str, str, int], str] = {}


def cloudevent(event_id: str, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/apps/user-service",
        "type": "com.example.audit.user",
        "data": seed_event(),
    }
    document.update(changes)
    return document


# --- the in-process app ---------------------------------------------------------------------


@dataclass
class Harness:
    app: IngestApp
    publisher: FakePublisher
    key_store: FakeKeyStore
    limiter: FakeLimiter


@pytest.fixture
def harness() -> Harness:
    publisher = FakePublisher()
    key_store = FakeKeyStore(
        {
            hash_key(KEY): stored(tenant_id="t1"),
            hash_key(REVOKED): stored(is_active=False),
            hash_key(EXPIRED): stored(expires_at=datetime(2020, 1, 1, tzinfo=UTC)),
            hash_key(NO_SCOPE): stored(scopes=("events:read",)),
        }
    )
    settings = Settings(max_event_bytes=2048, max_batch_body_bytes=65_536)
    limiter = FakeLimiter()
    app = build_app(
        settings,
        publisher=publisher,
        key_store=key_store,
        limiter=limiter,
        idempotency=FakeIdempotencyStore(),
    )
    return Harness(app, publisher, key_store, limiter)


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    def route(endpoint: Endpoint) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            return await serve(request, endpoint, harness.app)

        return handler

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    asgi = Starlette(
        routes=[
            Route(BATCH, route(Endpoint.BATCH), methods=methods),
            Route("/{path:path}", route(Endpoint.SINGLE), methods=methods),
        ]
    )
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


# --- scenarios: one request each, and what must come back -----------------------------------

Check = Callable[[Harness, httpx.Response], None]


@dataclass(frozen=True)
class Scenario:
    name: str
    method: str
    path: str
    status: int
    body: object = None
    content_type: str | None = None
    key: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    request_id: str = REQUEST_ID
    arrange: Callable[[Harness], None] | None = None
    check: Check | None = None


def post(
    name: str,
    path: str,
    status: int,
    body: object,
    *,
    content_type: str | None = JSON,
    key: str | None = KEY,
    **kw: Any,
) -> Scenario:
    return Scenario(name, "POST", path, status, body, content_type, key, **kw)


def get(name: str, path: str, status: int, **kw: Any) -> Scenario:
    return Scenario(name, "GET", path, status, **kw)


def fields_and_codes(response: httpx.Response) -> set[tuple[str, str]]:
    return {(error["field"], error["code"]) for error in response.json()["errors"]}


def problem_type(code: str) -> Check:
    def check(_: Harness, response: httpx.Response) -> None:
        assert response.json()["type"] == f"urn:audit-ingest:problem:{code}"

    return check


def published(count: int) -> Check:
    def check(harness: Harness, response: httpx.Response) -> None:
        assert len(harness.publisher.published) == count

    return check


def batch_statuses(*statuses: str) -> Check:
    def check(harness: Harness, response: httpx.Response) -> None:
        body = response.json()
        assert [item["status"] for item in body["events"]] == list(statuses)
        assert [item["index"] for item in body["events"]] == list(range(len(statuses)))
        assert body["accepted"] == statuses.count("accepted")
        assert body["rejected"] == statuses.count("rejected")
        assert len(harness.publisher.published) == statuses.count("accepted")

    return check


def both(*checks: Check) -> Check:
    def check(harness: Harness, response: httpx.Response) -> None:
        for each in checks:
            each(harness, response)

    return check


def fail_deliveries(*acknowledged: bool) -> Callable[[Harness], None]:
    def arrange(harness: Harness) -> None:
        harness.publisher.deliveries = [
            Delivery(True) if ok else Delivery(False, "timeout") for ok in acknowledged
        ]

    return arrange


def refuse_permanently(harness: Harness) -> None:
    harness.publisher.deliveries = [
        Delivery(True),
        Delivery(False, "Broker: Message size too large", retriable=False),
    ]


def publisher_defect(harness: Harness) -> None:
    async def broken(*_: object) -> list[Delivery]:
        raise RuntimeError("a defect")

    harness.publisher.publish = broken  # type: ignore[method-assign,assignment]


def quota_used_up(harness: Harness) -> None:
    harness.limiter.counts["k1"] = 10  # every test key has id k1 and a limit of 10 per minute


def key_store_down(harness: Harness) -> None:
    harness.key_store.down = True


def draining(harness: Harness) -> None:
    harness.app.draining.set()


def header_is(name: str, value: str) -> Check:
    def check(_: Harness, response: httpx.Response) -> None:
        assert response.headers[name] == value

    return check


def rejected_item_codes(index: int, codes: set[str]) -> Check:
    def check(_: Harness, response: httpx.Response) -> None:
        item = response.json()["events"][index]
        assert {error["code"] for error in item["errors"]} == codes

    return check


def ready_checks(broker: str, key_store: str) -> Check:
    def check(_: Harness, response: httpx.Response) -> None:
        assert response.json()["checks"] == {"broker": broker, "key_store": key_store}

    return check


def metrics_text(_: Harness, response: httpx.Response) -> None:
    assert "# TYPE audit_ingest_requests_total counter" in response.text


def new_request_id(_: Harness, response: httpx.Response) -> None:
    assert response.headers["x-request-id"] != "not a valid id!"


def error_fields(expected: set[tuple[str, str]]) -> Check:
    def check(_: Harness, response: httpx.Response) -> None:
        assert fields_and_codes(response) == expected

    return check


BIG_CONTEXT = {"x": "y" * 4000}
SCENARIOS: list[Scenario] = [
    # POST /v1/events
    post("single-json", SINGLE, 202, seed_event(), check=published(1)),
    post(
        "single-structured-cloudevent",
        SINGLE,
        202,
        cloudevent("evt-1"),
        content_type=CE,
        check=published(1),
    ),
    post(
        "single-binary-cloudevent",
        SINGLE,
        202,
        seed_event(),
        headers=BINARY_HEADERS,
        check=published(1),
    ),
    post(
        "single-binary-cloudevent-no-content-type",
        SINGLE,
        202,
        seed_event(),
        content_type=None,
        headers=BINARY_HEADERS,
        check=published(1),
    ),
    post(
        "single-invalid-event",
        SINGLE,
        400,
        {"actor": {"id": 5}},
        check=both(
            problem_type("invalid_event"),
            error_fields({("actor.id", "type"), ("action", "required"), ("resource", "required")}),
        ),
    ),
    post(
        "single-tenant-mismatch",
        SINGLE,
        400,
        seed_event(tenant_id="other"),
        check=error_fields({("tenant_id", "tenant_mismatch")}),
    ),
    post("single-not-json", SINGLE, 400, b"{nope", check=problem_type("malformed_body")),
    post(
        "single-incomplete-binary-cloudevent",
        SINGLE,
        400,
        seed_event(),
        headers=(("ce-specversion", "1.0"),),
        check=problem_type("malformed_body"),
    ),
    post(
        "single-no-key",
        SINGLE,
        401,
        seed_event(),
        key=None,
        check=header_is("www-authenticate", 'ApiKey header="X-API-Key"'),
    ),
    post("single-malformed-key", SINGLE, 401, seed_event(), key="aik_bogus"),
    post("single-unknown-key", SINGLE, 401, seed_event(), key=UNKNOWN),
    post("single-revoked-key", SINGLE, 403, seed_event(), key=REVOKED),
    post("single-expired-key", SINGLE, 403, seed_event(), key=EXPIRED),
    post("single-key-without-scope", SINGLE, 403, seed_event(), key=NO_SCOPE),
    post("single-too-large", SINGLE, 413, seed_event(context=BIG_CONTEXT), check=published(0)),
    post("single-text-plain", SINGLE, 415, b"hello", content_type="text/plain"),
    post("single-batch-media-type", SINGLE, 415, [cloudevent("evt-1")], content_type=CE_BATCH),
    post(
        "single-sink-unavailable",
        SINGLE,
        503,
        seed_event(),
        arrange=fail_deliveries(False),
        check=both(problem_type("sink_unavailable"), header_is("retry-after", "2")),
    ),
    post(
        "single-rate-limited",
        SINGLE,
        429,
        seed_event(),
        arrange=quota_used_up,
        check=both(
            problem_type("rate_limited"),
            header_is("retry-after", "42"),
            header_is("x-ratelimit-remaining", "0"),
            published(0),
        ),
    ),
    post(
        "single-internal-error",
        SINGLE,
        500,
        seed_event(),
        arrange=publisher_defect,
        check=problem_type("internal_error"),
    ),
    post(
        "single-key-store-unavailable",
        SINGLE,
        503,
        seed_event(),
        arrange=key_store_down,
        check=both(problem_type("key_store_unavailable"), header_is("retry-after", "2")),
    ),
    # POST /v1/events/batch
    post(
        "batch-json",
        BATCH,
        202,
        {"events": [seed_event(), seed_event(idempotency_key="k")]},
        check=batch_statuses("accepted", "accepted"),
    ),
    post(
        "batch-json-partial",
        BATCH,
        202,
        {"events": [seed_event(), {"actor": {}}, seed_event()]},
        check=both(
            batch_statuses("accepted", "rejected", "accepted"), rejected_item_codes(1, {"required"})
        ),
    ),
    post(
        "batch-json-partly-unacknowledged",
        BATCH,
        202,
        {"events": [seed_event(), seed_event()]},
        arrange=fail_deliveries(True, False),
        check=both(
            batch_statuses("accepted", "rejected"), rejected_item_codes(1, {"sink_unavailable"})
        ),
    ),
    post(
        "batch-cloudevents-batch",
        BATCH,
        202,
        [cloudevent("evt-1"), cloudevent("evt-2", data=None)],
        content_type=CE_BATCH,
        check=batch_statuses("accepted", "rejected"),
    ),
    post(
        "batch-structured-cloudevent",
        BATCH,
        202,
        cloudevent("evt-1"),
        content_type=CE,
        check=batch_statuses("accepted"),
    ),
    post(
        "batch-binary-cloudevent",
        BATCH,
        202,
        seed_event(),
        headers=BINARY_HEADERS,
        check=batch_statuses("accepted"),
    ),
    post(
        "batch-no-valid-event",
        BATCH,
        400,
        {"events": [{}, {"actor": {"id": "a"}}]},
        check=both(problem_type("invalid_event"), published(0)),
    ),
    post(
        "batch-too-many-events",
        BATCH,
        400,
        {"events": [{}] * 1001},
        check=error_fields({("events", "malformed_body")}),
    ),
    post(
        "batch-empty",
        BATCH,
        400,
        {"events": []},
        check=error_fields({("events", "malformed_body")}),
    ),
    post(
        "batch-extra-key",
        BATCH,
        400,
        {"events": [seed_event()], "tenant": "t1"},
        check=problem_type("malformed_body"),
    ),
    post("batch-no-key", BATCH, 401, {"events": [seed_event()]}, key=None),
    post("batch-revoked-key", BATCH, 403, {"events": [seed_event()]}, key=REVOKED),
    post("batch-too-large", BATCH, 413, {"events": [seed_event(context=BIG_CONTEXT)] * 17}),
    post("batch-text-plain", BATCH, 415, b"hello", content_type="text/plain"),
    post(
        "batch-json-partly-refused-permanently",
        BATCH,
        202,
        {"events": [seed_event(), seed_event()]},
        arrange=refuse_permanently,
        check=both(
            batch_statuses("accepted", "rejected"), rejected_item_codes(1, {"sink_rejected"})
        ),
    ),
    post(
        "batch-rate-limited",
        BATCH,
        429,
        {"events": [seed_event()]},
        arrange=quota_used_up,
        check=both(problem_type("rate_limited"), header_is("x-ratelimit-limit", "10")),
    ),
    post(
        "batch-internal-error",
        BATCH,
        500,
        {"events": [seed_event()]},
        arrange=publisher_defect,
        check=problem_type("internal_error"),
    ),
    post(
        "batch-sink-unavailable",
        BATCH,
        503,
        {"events": [seed_event()]},
        arrange=fail_deliveries(False),
        check=problem_type("sink_unavailable"),
    ),
    post(
        "batch-key-store-unavailable",
        BATCH,
        503,
        {"events": [seed_event()]},
        arrange=key_store_down,
        check=problem_type("key_store_unavailable"),
    ),
    # Operational paths.
    get("health", "/health", 200),
    get("ready", "/ready", 200, check=ready_checks("ok", "ok")),
    get(
        "ready-key-store-down",
        "/ready",
        503,
        arrange=key_store_down,
        check=ready_checks("ok", "down"),
    ),
    get("ready-draining", "/ready", 503, arrange=draining),
    get("metrics", "/metrics", 200, check=metrics_text),
    get(
        "health-invalid-request-id",
        "/health",
        200,
        request_id="not a valid id!",
        check=new_request_id,
    ),
    # Undocumented requests get the document's shared 404 and 405.
    get("unknown-path", "/nope", 404),
    get("get-single", SINGLE, 405, check=header_is("allow", "POST")),
    get("get-batch", BATCH, 405, check=header_is("allow", "POST")),
    Scenario("put-health", "PUT", "/health", 405, check=header_is("allow", "GET, HEAD")),
]


async def send(client: httpx.AsyncClient, scenario: Scenario) -> httpx.Response:
    headers = {"x-request-id": scenario.request_id, **dict(scenario.headers)}
    if scenario.content_type:
        headers["content-type"] = scenario.content_type
    if scenario.key:
        headers["x-api-key"] = scenario.key
    body = scenario.body
    content = None if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
    return await client.request(scenario.method, scenario.path, content=content, headers=headers)


def parsed_body(response: httpx.Response) -> object:
    if media_type(response.headers.get("content-type")).startswith("text/"):
        return response.text
    return response.json()


def test_scenario_names_are_unique() -> None:
    names = [scenario.name for scenario in SCENARIOS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.name)
async def test_response_matches_document(
    harness: Harness, client: httpx.AsyncClient, scenario: Scenario
) -> None:
    if scenario.arrange:
        scenario.arrange(harness)
    response = await send(client, scenario)
    assert response.status_code == scenario.status, response.text
    request_id = response.headers["x-request-id"]
    if scenario.request_id == REQUEST_ID:
        assert request_id == REQUEST_ID
    body = parsed_body(response)
    content_type = response.headers.get("content-type")
    validate_response(
        scenario.method,
        scenario.path,
        scenario.status,
        content_type,
        body,
        headers=response.headers,
    )
    if media_type(content_type) == PROBLEM:
        assert isinstance(body, dict)
        assert body["status"] == scenario.status
        assert body["request_id"] == request_id
        assert body["instance"] == scenario.path
    if scenario.check:
        scenario.check(harness, response)


# --- the checker itself fails when it should --------------------------------------------------


def test_checker_refuses_undocumented_answers() -> None:
    accepted = {
        "event_id": "0192d4e5-8a7c-7def-9012-3456789abcde",
        "received_at": "2024-12-05T10:00:00.123Z",
    }
    validate_response("POST", SINGLE, 202, JSON, accepted, headers={"X-Request-Id": "r"})
    with pytest.raises(AssertionError, match="documented"):
        validate_response("POST", SINGLE, 418, JSON, accepted)
    with pytest.raises(AssertionError, match="content type"):
        validate_response("POST", SINGLE, 202, "text/html", accepted)
    with pytest.raises(AssertionError, match="was unexpected"):
        validate_response("POST", SINGLE, 202, JSON, {**accepted, "extra": 1})
    with pytest.raises(AssertionError, match="X-Request-Id is required"):
        validate_response("POST", SINGLE, 202, JSON, accepted, headers={})
    problem = {
        "type": "urn:audit-ingest:problem:sink_unavailable",
        "title": "t",
        "status": 503,
        "detail": "d",
        "instance": SINGLE,
        "request_id": "r",
    }
    validate_response(
        "POST", SINGLE, 503, PROBLEM, problem, headers={"X-Request-Id": "r", "Retry-After": "2"}
    )
    with pytest.raises(AssertionError, match="Retry-After is required"):
        validate_response("POST", SINGLE, 503, PROBLEM, problem, headers={"X-Request-Id": "r"})
    with pytest.raises(AssertionError, match="not an integer"):
        validate_response(
            "POST",
            SINGLE,
            503,
            PROBLEM,
            problem,
            headers={"X-Request-Id": "r", "Retry-After": "soon"},
        )
    with pytest.raises(AssertionError, match="not a documented operation"):
        validate_response("DELETE", "/nope", 405, PROBLEM, problem)


def test_formats_are_checked() -> None:
    # Without the optional format libraries, `format` silently passes: make sure it does not.
    checker = Draft202012Validator.FORMAT_CHECKER
    assert not checker.conforms("2024-13-45 nonsense", "date-time")
    assert not checker.conforms("not-a-uuid", "uuid")
    assert not checker.conforms("no-at-sign", "email")


# --- the document ---------------------------------------------------------------------------


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in load_spec()["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method, path, operation


def test_document_is_valid_openapi_3_1() -> None:
    spec = load_spec()
    assert spec["openapi"] == "3.1.0"
    validate_openapi(spec)
    assert {(method, path): op["operationId"] for method, path, op in operations()} == {
        ("post", SINGLE): "ingestEvent",
        ("post", BATCH): "ingestBatch",
        ("get", "/health"): "getHealth",
        ("get", "/ready"): "getReadiness",
        ("get", "/metrics"): "getMetrics",
    }


def test_servers_name_the_local_stack_and_a_gateway() -> None:
    """Swagger UI and Postman take their base URL from `servers`: the local stack's URL (the
    port `make run` serves by default) and the gateway's, its host a variable."""
    makefile = (ROOT / "Makefile").read_text()
    port = re.search(r"^PORT\s*\?=\s*(\d+)\s*$", makefile, re.MULTILINE)
    assert port, "the Makefile no longer sets a default PORT: update openapi.yaml's servers"
    local, gateway = load_spec()["servers"]
    assert local["url"] == f"http://127.0.0.1:{port.group(1)}"
    assert gateway["url"] == "https://{gateway}"
    variable = gateway["variables"]["gateway"]
    assert variable["default"] and variable["description"]
    for server in (local, gateway):
        assert urlsplit(server["url"]).path == "", "paths in the document are absolute"
        assert server["description"]


def test_api_key_guards_exactly_the_ingest_operations() -> None:
    spec = load_spec()
    scheme = spec["components"]["securitySchemes"]["ApiKeyAuth"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    assert "security" not in spec
    for method, path, operation in operations():
        expected: list[dict[str, list[str]]] | None = (
            [{"ApiKeyAuth": []}] if method == "post" else None
        )
        assert operation.get("security") == expected, (method, path)


def all_responses() -> Iterator[tuple[str, int | None, dict[str, Any], str]]:
    """(where, status or None for shared ones, response, pointer), references followed."""
    for method, path, operation in operations():
        pointer = operation_pointer(method, path)
        assert pointer is not None
        for status, response in operation["responses"].items():
            node, at = deref(response, f"{pointer}/responses/{status}")
            yield f"{method.upper()} {path} {status}", int(status), node, at
    for name in load_spec()["components"]["responses"]:
        pointer = f"/components/responses/{name}"
        yield name, None, resolve_pointer(pointer), pointer


def required_headers(response: dict[str, Any], pointer: str) -> set[str]:
    names = set()
    for name, header in response.get("headers", {}).items():
        spec, _ = deref(header, f"{pointer}/headers/{name}")
        if spec.get("required"):
            names.add(name)
    return names


def test_declared_headers() -> None:
    by_status = {
        401: {"X-Request-Id", "WWW-Authenticate"},
        429: {"X-Request-Id", "Retry-After"},
    }
    for where, status, response, pointer in all_responses():
        required = required_headers(response, pointer)
        assert "X-Request-Id" in required, where
        if status in by_status:
            assert required == by_status[status], where
        if status == 503 and where.startswith("POST"):
            assert required == {"X-Request-Id", "Retry-After"}, where
        if status == 429:
            assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(
                response["headers"]
            ), where
    shared = load_spec()["components"]["responses"]
    assert required_headers(
        shared["MethodNotAllowed"], "/components/responses/MethodNotAllowed"
    ) == {"X-Request-Id", "Allow"}


def test_every_documented_status_is_exercised() -> None:
    documented = {
        (method, path, int(status))
        for method, path, operation in operations()
        for status in operation["responses"]
    }
    exercised = {
        (scenario.method.lower(), normalise_path(scenario.path), scenario.status)
        for scenario in SCENARIOS
    }
    allowed = set(NOT_EXERCISED)
    assert sorted(documented - exercised - allowed) == []
    assert sorted(allowed - documented) == [], "NOT_EXERCISED names undocumented statuses"
    assert sorted(allowed & exercised) == [], "NOT_EXERCISED names exercised statuses"
    shared = {s.status for s in SCENARIOS if operation_pointer(s.method, s.path) is None}
    assert shared == {404, 405}


def media_examples() -> Iterator[tuple[str, str, str, Any]]:
    """(id, method and path or response, media type, example value) for every example."""
    for method, path, operation in operations():
        pointer = operation_pointer(method, path)
        content = operation.get("requestBody", {}).get("content", {})
        for kind, media in content.items():
            for name, example in media.get("examples", {}).items():
                yield f"{method} {path} {kind} {name}", f"{pointer}/requestBody", kind, example
    for where, _, response, pointer in all_responses():
        for kind, media in response.get("content", {}).items():
            for name, example in media.get("examples", {}).items():
                yield f"{where} {kind} {name}", pointer, kind, example


def test_examples_match_their_schemas() -> None:
    examples = list(media_examples())
    # Every request media type shows at least one example.
    for method, path, operation in operations():
        for kind, media in operation.get("requestBody", {}).get("content", {}).items():
            assert media.get("examples"), f"{method} {path} {kind} has no example"
    assert len(examples) >= 10
    for name, pointer, kind, example in examples:
        escaped = kind.replace("/", "~1")
        check_against(f"{pointer}/content/{escaped}/schema", example["value"], name)


REQUEST_EXAMPLES = [
    (f"{path} {kind} {name}", path, kind, example["value"])
    for method, path, operation in operations()
    for kind, media in operation.get("requestBody", {}).get("content", {}).items()
    for name, example in media.get("examples", {}).items()
]


@pytest.mark.parametrize(
    ("path", "kind", "value"), [pytest.param(*rest, id=name) for name, *rest in REQUEST_EXAMPLES]
)
async def test_request_examples_are_accepted(
    client: httpx.AsyncClient, path: str, kind: str, value: object
) -> None:
    response = await client.post(
        path, content=orjson.dumps(value), headers={"content-type": kind, "x-api-key": KEY}
    )
    assert response.status_code == 202, response.text
    validate_response(
        "POST",
        path,
        202,
        response.headers["content-type"],
        response.json(),
        headers=response.headers,
    )
    if path == BATCH:
        assert response.json()["rejected"] == 0


# --- the document agrees with the code's model and limits -----------------------------------


def describe(schema: dict[str, Any]) -> dict[str, Any]:
    """A property schema reduced to what both pydantic and the document state."""
    shape: dict[str, Any] = {"types": set(), "refs": set()}
    for alternative in schema.get("anyOf", [schema]):
        if "$ref" in alternative:
            shape["refs"].add(alternative["$ref"].rsplit("/", 1)[-1])
            continue
        kind = alternative["type"]
        shape["types"] |= set(kind if isinstance(kind, list) else [kind])
        for bound in ("minLength", "maxLength"):
            if bound in alternative:
                shape[bound] = alternative[bound]
        if alternative.get("format") == "email":
            shape["format"] = "email"
    return shape


def test_audit_event_schema_matches_the_model() -> None:
    model = AuditEventIn.model_json_schema()
    components = load_spec()["components"]["schemas"]
    pairs = [(model, components["AuditEvent"])] + [
        (model["$defs"][name], components[name])
        for name in ("Actor", "Action", "Resource", "Result")
    ]
    assert set(model["$defs"]) == {"Actor", "Action", "Resource", "Result"}
    for ours, theirs in pairs:
        where = theirs["title"]
        assert theirs["additionalProperties"] is ours["additionalProperties"] is False, where
        assert set(theirs["required"]) == set(ours["required"]), where
        assert list(theirs["properties"]) == list(ours["properties"]), where
        for name, prop in ours["properties"].items():
            assert describe(theirs["properties"][name]) == describe(prop), f"{where}.{name}"


def test_limits_match_the_code() -> None:
    schemas = load_spec()["components"]["schemas"]
    limits = Limits()
    assert schemas["EventBatch"]["properties"]["events"]["maxItems"] == limits.max_batch_events
    assert schemas["CloudEventBatch"]["maxItems"] == limits.max_batch_events
    assert schemas["BatchAccepted"]["properties"]["events"]["maxItems"] == (limits.max_batch_events)
    assert schemas["BatchItemRejected"]["properties"]["errors"]["maxItems"] == (
        MAX_ERRORS_PER_EVENT
    )
    description = load_spec()["info"]["description"]
    for value in (
        limits.max_event_bytes,
        limits.max_depth,
        limits.max_string_length,
        limits.max_future_skew_seconds,
    ):
        assert f"| {value} " in description, value
