"""gzip request bodies, bounded while they inflate; the access log line."""

import gzip
import logging
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
from audit_ingest.errors import MalformedBody, PayloadTooLarge, UnsupportedMediaType
from audit_ingest.http.body import decode_content
from audit_ingest.http.endpoint import serve
from audit_ingest.http.routes import Endpoint
from audit_ingest.settings import Settings
from tests.unit.fakes import FakeIdempotencyStore, FakeKeyStore, FakeLimiter, FakePublisher
from tests.unit.samples import seed_event, stored

KEY = format_key(b"\x0e" * 32)


def test_identity_and_gzip() -> None:
    assert decode_content(b"abc", None, 10) == b"abc"
    assert decode_content(b"abc", "identity", 10) == b"abc"
    assert decode_content(gzip.compress(b"hello"), "GZIP", 10) == b"hello"


def test_a_compression_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)  # ~50 KB that inflates to 50 MB
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge):
        decode_content(bomb, "gzip", 65_536)


@pytest.mark.parametrize(
    "body", [b"not gzip", gzip.compress(b"hello")[:-4], gzip.compress(b"a") + b"trailing"]
)
def test_broken_gzip_is_400(body: bytes) -> None:
    with pytest.raises(MalformedBody, match="gzip"):
        decode_content(body, "gzip", 1000)


@pytest.mark.parametrize("coding", ["br", "deflate", "gzip, br", "zstd"])
def test_other_encodings_are_415(coding: str) -> None:
    with pytest.raises(UnsupportedMediaType, match="Content-Encoding"):
        decode_content(b"x", coding, 1000)


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, FakePublisher]]:
    publisher = FakePublisher()
    store = FakeKeyStore({hash_key(KEY): stored(tenant_id="t-log", id="k-log")})
    app = build_app(
        Settings(),
        publisher=publisher,
        key_store=store,
        limiter=FakeLimiter(),
        idempotency=FakeIdempotencyStore(),
    )

    async def endpoint(request: Request) -> Response:
        return await serve(request, Endpoint.BATCH, app)

    asgi = Starlette(routes=[Route("/{path:path}", endpoint, methods=["POST"])])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi), base_url="http://t"
    ) as http:
        yield http, publisher


async def test_gzip_batch_end_to_end_and_the_access_log(
    client: tuple[httpx.AsyncClient, FakePublisher], caplog: pytest.LogCaptureFixture
) -> None:
    http, publisher = client
    body = gzip.compress(orjson.dumps({"events": [seed_event(), {"actor": {}}]}))
    with caplog.at_level(logging.INFO, logger="audit_ingest.access"):
        response = await http.post(
            "/v1/events/batch",
            content=body,
            headers={
                "content-type": "application/json",
                "content-encoding": "gzip",
                "x-api-key": KEY,
                "x-request-id": "log-1",
            },
        )
    assert response.status_code == 202
    assert len(publisher.published) == 1
    (record,) = [r for r in caplog.records if r.name == "audit_ingest.access"]
    assert record.getMessage() == "request"
    fields = record.__dict__
    assert (fields["request_id"], fields["status"], fields["tenant_id"]) == ("log-1", 202, "t-log")
    assert (fields["events"], fields["accepted"], fields["rejected"]) == (2, 1, 1)
    assert fields["duration_ms"] > 0
    assert KEY not in caplog.text and KEY[4:] not in str(fields)
