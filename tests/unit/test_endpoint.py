"""The HTTP edge with fake adapters: statuses, headers and bodies, no I/O."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from audit_ingest.bootstrap import IngestApp, build_app
from audit_ingest.domain.keys import format_key, hash_key
from audit_ingest.http.endpoint import serve
from audit_ingest.http.routes import Endpoint
from audit_ingest.ports import Delivery
from audit_ingest.settings import Settings
from tests.unit.fakes import FakeIdempotencyStore, FakeKeyStore, FakeLimiter, FakePublisher
from tests.unit.samples import seed_event, stored

OPERATIONS_GUIDE = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
KEY = format_key(b"\x07" * 32)
REVOKED = format_key(b"\x08" * 32)


def make_app(publisher: FakePublisher) -> IngestApp:
    store = FakeKeyStore(
        {
            hash_key(KEY): stored(tenant_id="t1"),
            hash_key(REVOKED): stored(is_active=False),
        }
    )
    return build_app(
        Settings(max_event_bytes=2048),
        publisher=publisher,
        key_store=store,
        limiter=FakeLimiter(),
        idempotency=FakeIdempotencyStore(),
    )


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
async def client(publisher: FakePublisher) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(publisher)

    def route(endpoint: Endpoint):  # type: ignore[no-untyped-def]
        async def handler(request: Request) -> Response:
            return await serve(request, endpoint, app)

        return handler

    asgi = Starlette(
        routes=[
            Route("/v1/events/batch", route(Endpoint.BATCH), methods=["POST", "GET"]),
            Route("/{path:path}", route(Endpoint.SINGLE), methods=["GET", "POST", "PUT"]),
        ]
    )
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def post(client: httpx.AsyncClient, path: str, body: object, key: str | None = KEY, **headers: str):  # type: ignore[no-untyped-def]
    all_headers = {"content-type": "application/json", **headers}
    if key:
        all_headers["x-api-key"] = key
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(path, content=content, headers=all_headers)


async def test_single_202(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    response = await post(client, "/v1/events", seed_event())
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"event_id", "received_at"}
    assert body["received_at"].endswith("Z") and len(body["received_at"]) == 24
    assert response.headers["x-request-id"]
    (record,) = publisher.published
    assert orjson.loads(record.value)["event_id"] == body["event_id"]


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await post(client, "/v1/events", seed_event(), **{"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


async def test_invalid_event_is_problem_json(client: httpx.AsyncClient) -> None:
    response = await post(client, "/v1/events", {"actor": {"id": 5}})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 400 and problem["type"].endswith("invalid_event")
    assert {e["field"] for e in problem["errors"]} == {"actor.id", "action", "resource"}
    assert problem["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("key", "status"),
    [(None, 401), ("aik_bogus", 401), (format_key(b"\x09" * 32), 401), (REVOKED, 403)],
)
async def test_auth_statuses(client: httpx.AsyncClient, key: str | None, status: int) -> None:
    response = await post(client, "/v1/events", seed_event(), key=key)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    if status == 401:
        assert "X-API-Key" in response.headers["www-authenticate"]


async def test_body_limits_and_media_types(client: httpx.AsyncClient) -> None:
    big = seed_event(context={"x": "y" * 4000})
    assert (await post(client, "/v1/events", big)).status_code == 413
    response = await post(client, "/v1/events", b"hello", **{"content-type": "text/plain"})
    assert response.status_code == 415
    assert (await post(client, "/v1/events", b"{nope")).status_code == 400


async def test_batch_partial_success(client: httpx.AsyncClient) -> None:
    response = await post(
        client, "/v1/events/batch", {"events": [seed_event(), {"actor": {}}, seed_event()]}
    )
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert [e["status"] for e in body["events"]] == ["accepted", "rejected", "accepted"]
    assert body["events"][1]["index"] == 1 and body["events"][1]["errors"]


async def test_batch_with_no_valid_event_is_400(client: httpx.AsyncClient) -> None:
    response = await post(client, "/v1/events/batch", {"events": [{}, {"actor": {"id": "a"}}]})
    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert "events[0].actor" in fields and "events[1].action" in fields


async def test_batch_of_1001_is_400(client: httpx.AsyncClient) -> None:
    response = await post(client, "/v1/events/batch", {"events": [seed_event()] * 1001})
    assert response.status_code == 400


async def test_sink_unavailable_is_503_with_retry_after(
    publisher: FakePublisher, client: httpx.AsyncClient
) -> None:
    publisher.deliveries = [Delivery(False, "timeout")]
    response = await post(client, "/v1/events", seed_event())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"


async def test_operational_paths(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"]["broker"] == "ok"
    metrics = await client.get("/metrics")
    assert "audit_ingest_requests_total" in metrics.text
    assert (await client.get("/nope")).status_code == 404
    wrong = await client.get("/v1/events")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"


async def test_metrics_expose_every_family_the_operations_guide_lists(
    client: httpx.AsyncClient,
) -> None:
    await post(client, "/v1/events", seed_event())
    await post(client, "/v1/events/batch", {"events": [seed_event(), {}]})
    text = (await client.get("/metrics")).text
    families = [
        "audit_ingest_requests_total",
        "audit_ingest_request_duration_seconds",
        "audit_ingest_events_total",
        "audit_ingest_kafka_delivery_seconds",
        "audit_ingest_batch_events",
        "audit_ingest_dlq_records_total",
        "audit_ingest_rate_limit_decisions_total",
        "audit_ingest_rate_limit_fail_open_total",
        "audit_ingest_key_cache_lookups_total",
        "audit_ingest_idempotency_total",
        "audit_ingest_dependency_errors_total",
    ]
    missing = [name for name in families if f"# TYPE {name.removesuffix('_total')}" not in text]
    assert missing == []
    assert [name for name in families if name not in OPERATIONS_GUIDE] == []
    assert 'audit_ingest_events_total{endpoint="batch",outcome="rejected"}' in text
