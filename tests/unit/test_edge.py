"""One HTTP edge for every function: the same request id, errors, 500, metrics and access log.

Each check runs against the two ingest functions and `authorize`; a change to one function's
edge that the others do not share fails here.
"""

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from audit_ingest.bootstrap import AuthorizeApp, IngestApp, build_app, build_authorize_app
from audit_ingest.domain.keys import format_key, hash_key
from audit_ingest.domain.principal import Principal
from audit_ingest.errors import (
    AuditError,
    Forbidden,
    KeyStoreUnavailable,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    SinkUnavailable,
    Unauthenticated,
    Unavailable,
)
from audit_ingest.http.authorize import serve_authorize
from audit_ingest.http.endpoint import serve
from audit_ingest.http.routes import OPERATIONAL, Endpoint, Operation, resolve, resolve_authorize
from audit_ingest.settings import Settings
from tests.unit.fakes import FakeIdempotencyStore, FakeKeyStore, FakeLimiter, FakePublisher
from tests.unit.samples import seed_event, stored

FUNCTIONS = ("single", "batch", "authorize")
KEY = format_key(b"\x0b" * 32)  # not in the key store: resolving it asks the store
RETRY_AFTER = 7  # not the default 2: the edge must take it from the app's settings
REQUEST_ID = "edge-test-1"


@dataclass
class Function:
    label: str
    client: httpx.AsyncClient
    app: IngestApp | AuthorizeApp
    key_store: FakeKeyStore


@asynccontextmanager
async def function(label: str) -> AsyncIterator[Function]:
    store = FakeKeyStore()
    app: IngestApp | AuthorizeApp
    handler: Callable[[Request], Awaitable[Response]]
    if label == "authorize":
        app = build_authorize_app(
            Settings(gateway_signing_secret="s" * 32, retry_after_seconds=RETRY_AFTER),
            key_store=store,
        )
        authorize_app = app

        async def handler(request: Request) -> Response:
            return await serve_authorize(request, authorize_app)

    else:
        endpoint = Endpoint[label.upper()]
        app = build_app(
            Settings(retry_after_seconds=RETRY_AFTER),
            publisher=FakePublisher(),
            key_store=store,
            limiter=FakeLimiter(),
            idempotency=FakeIdempotencyStore(),
        )
        ingest_app = app

        async def handler(request: Request) -> Response:
            return await serve(request, endpoint, ingest_app)

    asgi = Starlette(routes=[Route("/{path:path}", handler, methods=["GET", "POST", "PUT"])])
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Function(label, client, app, store)


@pytest.fixture(params=FUNCTIONS)
async def fn(request: pytest.FixtureRequest) -> AsyncIterator[Function]:
    async with function(request.param) as served:
        yield served


class Raising:
    """An authenticator that raises what it is given: the same failure in every function."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def authenticate(self, headers: object, now: datetime) -> Principal:
        raise self.error


def post_root(client: httpx.AsyncClient, **headers: str) -> Awaitable[httpx.Response]:
    # `/` is every function's own path (Knative Eventing delivers there; forward-auth takes any).
    all_headers = {"content-type": "application/json", "x-api-key": KEY, **headers}
    return client.post("/", content=b"{}", headers=all_headers)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests_of(label: str) -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "audit_ingest_requests":
            total += sum(
                s.value
                for s in metric.samples
                if s.name.endswith("_total") and s.labels["endpoint"] == label
            )
    return total


def comparable(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in response.headers.items() if not k.startswith("x-ratelimit-")}
    return response.status_code, headers, response.content


ERRORS: list[AuditError] = [
    Unauthenticated("No API key."),
    Forbidden("Revoked."),
    RateLimited(5, 30),
    KeyStoreUnavailable("down"),
    SinkUnavailable("no ack"),
    Unavailable("idempotency store down"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
async def test_an_audit_error_is_the_same_problem_in_every_function(error: AuditError) -> None:
    answers = {}
    for label in FUNCTIONS:
        async with function(label) as served:
            served.app.authenticator = Raising(error)
            response = await post_root(served.client, **{"x-request-id": REQUEST_ID})
            answers[label] = comparable(response)
    status, headers, _ = answers["single"]
    assert status >= 400 and headers["content-type"] == "application/problem+json"
    assert headers["x-request-id"] == REQUEST_ID
    if isinstance(error, Unavailable):
        assert headers["retry-after"] == str(RETRY_AFTER)
    assert answers["batch"] == answers["single"]
    assert answers["authorize"] == answers["single"]


async def test_a_defect_is_a_logged_500_with_the_request_id(
    fn: Function, caplog: pytest.LogCaptureFixture
) -> None:
    fn.app.authenticator = Raising(RuntimeError("a defect"))
    before = sample("audit_ingest_requests_total", endpoint=fn.label, status="500")
    with caplog.at_level(logging.INFO):
        response = await post_root(fn.client, **{"x-request-id": REQUEST_ID})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == REQUEST_ID
    problem = response.json()
    assert problem["type"].endswith("internal_error") and problem["request_id"] == REQUEST_ID
    assert "a defect" not in response.text
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.getMessage() == f"unhandled error (request {REQUEST_ID})"
    assert error.exc_info is not None and str(error.exc_info[1]) == "a defect"
    (access,) = [r for r in caplog.records if r.name == "audit_ingest.access"]
    assert (access.request_id, access.endpoint, access.status) == (REQUEST_ID, fn.label, 500)  # type: ignore[attr-defined]
    assert sample("audit_ingest_requests_total", endpoint=fn.label, status="500") == before + 1


async def test_a_key_store_outage_counts_as_a_key_store_dependency_error(fn: Function) -> None:
    fn.key_store.down = True
    before = sample("audit_ingest_dependency_errors_total", dependency="key_store")
    response = await post_root(fn.client)
    assert response.status_code == 503
    assert response.json()["type"].endswith("key_store_unavailable")
    assert response.headers["retry-after"] == str(RETRY_AFTER)
    assert sample("audit_ingest_dependency_errors_total", dependency="key_store") == before + 1


@pytest.mark.parametrize(
    ("error", "dependency"),
    [(KeyStoreUnavailable("down"), "key_store"), (SinkUnavailable("no ack"), "broker")],
)
async def test_dependency_errors_are_labelled_alike(
    fn: Function, error: AuditError, dependency: str
) -> None:
    fn.app.authenticator = Raising(error)
    before = sample("audit_ingest_dependency_errors_total", dependency=dependency)
    assert (await post_root(fn.client)).status_code == 503
    assert sample("audit_ingest_dependency_errors_total", dependency=dependency) == before + 1


@pytest.mark.parametrize("path", list(OPERATIONAL))
async def test_probes_and_scrapes_are_not_counted(fn: Function, path: str) -> None:
    before = requests_of(fn.label)
    response = await fn.client.get(path)
    assert response.status_code == 200
    assert requests_of(fn.label) == before


async def test_health_and_metrics_are_not_logged_ready_is(
    fn: Function, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="audit_ingest.access"):
        await fn.client.get("/health")
        await fn.client.get("/metrics")
        assert [r for r in caplog.records if r.name == "audit_ingest.access"] == []
        ready = await fn.client.get("/ready", headers={"x-request-id": REQUEST_ID})
    assert ready.status_code == 200
    (line,) = [r for r in caplog.records if r.name == "audit_ingest.access"]
    fields = {k: getattr(line, k) for k in ("request_id", "endpoint", "method", "path", "status")}
    assert fields == {
        "request_id": REQUEST_ID,
        "endpoint": fn.label,
        "method": "GET",
        "path": "/ready",
        "status": 200,
    }


async def test_a_wrong_method_on_a_probe_is_counted_and_logged(
    fn: Function, caplog: pytest.LogCaptureFixture
) -> None:
    before = sample("audit_ingest_requests_total", endpoint=fn.label, status="405")
    with caplog.at_level(logging.INFO, logger="audit_ingest.access"):
        response = await fn.client.put("/health")
    assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"
    assert sample("audit_ingest_requests_total", endpoint=fn.label, status="405") == before + 1
    assert [r.status for r in caplog.records if r.name == "audit_ingest.access"] == [405]  # type: ignore[attr-defined]


async def test_request_ids(fn: Function) -> None:
    echoed = await fn.client.get("/health", headers={"x-request-id": "abc-1.2:3_X"})
    assert echoed.headers["x-request-id"] == "abc-1.2:3_X"
    for offered in (None, "not a valid id!", "x" * 129):
        headers = {"x-request-id": offered} if offered else {}
        new = (await fn.client.get("/health", headers=headers)).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", new), new
    first = (await fn.client.get("/health")).headers["x-request-id"]
    second = (await fn.client.get("/health")).headers["x-request-id"]
    assert first != second


def test_one_definition_of_the_operational_paths() -> None:
    for path, operation in OPERATIONAL.items():
        for endpoint in Endpoint:
            assert resolve("GET", path, endpoint) is operation
            assert resolve("HEAD", path + "/", endpoint) is operation
            with pytest.raises(MethodNotAllowed):
                resolve("POST", path, endpoint)
        assert resolve_authorize("GET", path) is operation
        assert resolve_authorize("HEAD", path + "/") is operation
        with pytest.raises(MethodNotAllowed):
            resolve_authorize("POST", path)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "HEAD"])
@pytest.mark.parametrize("path", ["/", "/authorize", "/v1/events", "/anything/else", ""])
def test_authorize_checks_every_other_path_and_method(method: str, path: str) -> None:
    assert resolve_authorize(method, path) is Operation.AUTHORIZE


@pytest.mark.parametrize("endpoint", list(Endpoint))
def test_not_found_names_the_function_own_path(endpoint: Endpoint) -> None:
    with pytest.raises(NotFound) as raised:
        resolve("POST", "/v2/nothing", endpoint)
    assert raised.value.message.endswith(f"this function serves POST {endpoint.value}.")


async def test_every_json_body_ends_with_one_newline(fn: Function) -> None:
    """`curl` prints a body as it is: without a final newline the shell prompt runs into it.

    The success answer, a problem with field errors, 401, 405, 500, `/health` and `/ready`.
    """
    valid = format_key(b"\x0c" * 32)
    fn.key_store.keys[hash_key(valid)] = stored()
    ok_body = {"single": seed_event(), "batch": {"events": [seed_event()]}}.get(fn.label, {})
    answers = [
        await fn.client.get("/health"),
        await fn.client.get("/ready"),
        await fn.client.put("/health"),
        await post_root(fn.client),
        await fn.client.post(
            "/",
            content=orjson.dumps(ok_body),
            headers={"content-type": "application/json", "x-api-key": valid},
        ),
    ]
    if fn.label != "authorize":
        answers.append(await post_root(fn.client, **{"x-api-key": valid}))  # 400, `errors`
    fn.app.authenticator = Raising(RuntimeError("a defect"))
    answers.append(await post_root(fn.client))
    statuses = sorted(response.status_code for response in answers)
    expected = [200, 200, 202 if fn.label != "authorize" else 200, 401, 405, 500]
    assert statuses == sorted(expected + ([400] if fn.label != "authorize" else []))
    for response in answers:
        assert response.headers["content-type"].endswith("json"), response.status_code
        assert response.content.endswith(b"}\n"), (response.status_code, response.content)
        assert not response.content.endswith(b"\n\n")
        assert int(response.headers["content-length"]) == len(response.content)
        response.json()  # still one JSON document
