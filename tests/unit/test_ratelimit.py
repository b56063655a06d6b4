from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from audit_ingest.bootstrap import build_app
from audit_ingest.domain.keys import format_key, hash_key
from audit_ingest.domain.ratelimit import decide, rate_headers, window_of
from audit_ingest.http.endpoint import serve
from audit_ingest.http.routes import Endpoint
from audit_ingest.settings import Settings
from tests.unit.fakes import FakeIdempotencyStore, FakeKeyStore, FakeLimiter, FakePublisher
from tests.unit.samples import seed_event, stored

KEY_A = format_key(b"\x0a" * 32)
KEY_B = format_key(b"\x0b" * 32)


def test_windows_align_to_the_minute() -> None:
    assert window_of(120.0) == (2, 60)
    assert window_of(179.2) == (2, 1)
    assert window_of(179.99) == (2, 1)  # never 0: Retry-After 0 would invite a hot loop


def test_decisions_at_the_boundary() -> None:
    assert decide(5, 5, 10).allowed and decide(5, 5, 10).remaining == 0
    assert not decide(6, 5, 10).allowed
    assert rate_headers(decide(2, 5, 10)) == {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "3",
        "X-RateLimit-Reset": "10",
    }


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, FakePublisher]]:
    publisher = FakePublisher()
    store = FakeKeyStore(
        {
            hash_key(KEY_A): stored(id="a", tenant_id="ta", rate_limit=5),
            hash_key(KEY_B): stored(id="b", tenant_id="tb", rate_limit=5),
        }
    )
    app = build_app(
        Settings(),
        publisher=publisher,
        key_store=store,
        limiter=FakeLimiter(),
        idempotency=FakeIdempotencyStore(),
    )

    async def endpoint(request: Request) -> Response:
        return await serve(request, Endpoint.SINGLE, app)

    asgi = Starlette(routes=[Route("/{path:path}", endpoint, methods=["POST"])])
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http, publisher


async def send(client: httpx.AsyncClient, key: str, body: object = None) -> httpx.Response:
    return await client.post(
        "/v1/events",
        content=orjson.dumps(body or seed_event()),
        headers={"content-type": "application/json", "x-api-key": key},
    )


async def test_five_then_429_and_other_keys_unaffected(
    client: tuple[httpx.AsyncClient, FakePublisher],
) -> None:
    http, publisher = client
    for expected_remaining in range(4, -1, -1):
        response = await send(http, KEY_A)
        assert response.status_code == 202
        assert response.headers["x-ratelimit-limit"] == "5"
        assert response.headers["x-ratelimit-remaining"] == str(expected_remaining)
        assert response.headers["x-ratelimit-reset"] == "42"
    limited = await send(http, KEY_A)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "42"
    assert limited.json()["type"] == "urn:audit-ingest:problem:rate_limited"
    assert len(publisher.published) == 5  # the 429'd event was not written
    assert (await send(http, KEY_B)).status_code == 202


async def test_quota_headers_on_authenticated_errors_only(
    client: tuple[httpx.AsyncClient, FakePublisher],
) -> None:
    http, _ = client
    invalid = await send(http, KEY_A, {"actor": {}})
    assert invalid.status_code == 400 and invalid.headers["x-ratelimit-remaining"] == "4"
    unknown = await send(http, format_key(b"\x0c" * 32))
    assert unknown.status_code == 401 and "x-ratelimit-limit" not in unknown.headers
