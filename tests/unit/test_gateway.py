"""Gateway mode: the signed principal, the authorize function, and ingest behind it."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import jwt
import orjson
import pytest
from pydantic import ValidationError

from audit_ingest.bootstrap import build_app, build_authorize_app
from audit_ingest.domain.gateway_token import (
    AUDIENCE,
    PRINCIPAL_HEADER,
    sign_principal,
    verify_principal,
)
from audit_ingest.domain.keys import format_key, hash_key
from audit_ingest.domain.principal import Principal
from audit_ingest.errors import Unauthenticated
from audit_ingest.http.authorize import serve_authorize
from audit_ingest.http.endpoint import serve
from audit_ingest.http.routes import Endpoint
from audit_ingest.settings import Settings
from tests.unit.clients import app_client
from tests.unit.fakes import FakeIdempotencyStore, FakeKeyStore, FakePublisher
from tests.unit.samples import seed_event, stored

SECRET = b"s" * 32
NOW = 1_800_000_000
PRINCIPAL = Principal("t1", "k1", ("events:write",), 5)
KEY = format_key(b"\x05" * 32)
REVOKED = format_key(b"\x06" * 32)


def test_round_trip() -> None:
    token = sign_principal(PRINCIPAL, secret=SECRET, now=NOW, ttl=60)
    assert verify_principal(token, secret=SECRET, now=NOW + 59) == PRINCIPAL


@pytest.mark.parametrize(
    ("token_of", "message"),
    [
        (lambda: None, "through the gateway"),
        (lambda: "", "through the gateway"),
        (lambda: "garbage", "not valid"),
        (lambda: sign_principal(PRINCIPAL, secret=b"x" * 32, now=NOW, ttl=60), "not valid"),
        (lambda: sign_principal(PRINCIPAL, secret=SECRET, now=NOW - 120, ttl=60), "expired"),
        (lambda: sign_principal(PRINCIPAL, secret=SECRET, now=NOW + 600, ttl=60), "expired"),
        (
            lambda: jwt.encode(
                {
                    "aud": "other",
                    "iat": NOW,
                    "exp": NOW + 60,
                    "tenant_id": "t",
                    "api_key_id": "k",
                    "scopes": [],
                    "rate_limit": 1,
                },
                SECRET,
                algorithm="HS256",
            ),
            "not valid",
        ),
        (
            lambda: jwt.encode(
                {"aud": AUDIENCE, "iat": NOW, "exp": NOW + 60}, SECRET, algorithm="HS256"
            ),
            "not valid",
        ),
        (
            lambda: jwt.encode(
                {
                    "aud": AUDIENCE,
                    "iat": NOW,
                    "exp": NOW + 60,
                    "tenant_id": "t",
                    "api_key_id": "k",
                    "scopes": ["events:write"],
                    "rate_limit": 1,
                },
                "",
                algorithm="none",
            ),
            "not valid",
        ),
    ],
)
def test_refused_tokens(token_of: object, message: str) -> None:
    with pytest.raises(Unauthenticated, match=message):
        verify_principal(token_of(), secret=SECRET, now=NOW)  # type: ignore[operator]


def test_tampered_claims_fail_the_signature() -> None:
    token = sign_principal(PRINCIPAL, secret=SECRET, now=NOW, ttl=60)
    header, _claims, signature = token.split(".")
    forged_claims = jwt.utils.base64url_encode(
        orjson.dumps(
            {**jwt.decode(token, options={"verify_signature": False}), "tenant_id": "victim"}
        )
    )
    with pytest.raises(Unauthenticated, match="not valid"):
        verify_principal(f"{header}.{forged_claims.decode()}.{signature}", secret=SECRET, now=NOW)


def test_gateway_mode_needs_a_long_secret() -> None:
    with pytest.raises(ValidationError, match="GATEWAY_SIGNING_SECRET"):
        Settings(auth_mode="gateway")
    with pytest.raises(ValidationError, match="GATEWAY_SIGNING_SECRET"):
        Settings(auth_mode="gateway", gateway_signing_secret="short")
    assert Settings(auth_mode="gateway", gateway_signing_secret="s" * 32).signing_secret()


@pytest.fixture
async def authorize_client() -> AsyncIterator[httpx.AsyncClient]:
    store = FakeKeyStore(
        {
            hash_key(KEY): stored(tenant_id="t1", id="k1", rate_limit=5),
            hash_key(REVOKED): stored(is_active=False),
        }
    )
    app = build_authorize_app(Settings(gateway_signing_secret="s" * 32), key_store=store)
    async with app_client(lambda request: serve_authorize(request, app)) as client:
        yield client


async def test_authorize_answers_the_signed_principal(
    authorize_client: httpx.AsyncClient,
) -> None:
    response = await authorize_client.get("/authorize", headers={"x-api-key": KEY})
    assert response.status_code == 200
    assert response.headers["x-audit-tenant-id"] == "t1"
    assert response.headers["x-audit-key-id"] == "k1"
    assert response.headers["x-audit-rate-limit"] == "5"
    now = int(datetime.now(UTC).timestamp())
    principal = verify_principal(response.headers["x-audit-principal"], secret=SECRET, now=now)
    assert principal == Principal("t1", "k1", ("events:write",), 5)
    assert KEY not in response.text and KEY not in str(response.headers)


@pytest.mark.parametrize(("key", "status"), [(None, 401), ("aik_x", 401), (REVOKED, 403)])
async def test_authorize_refusals_are_problems(
    authorize_client: httpx.AsyncClient, key: str | None, status: int
) -> None:
    headers = {"x-api-key": key} if key else {}
    response = await authorize_client.post("/", headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert "x-audit-principal" not in response.headers


async def test_authorize_operational_paths(authorize_client: httpx.AsyncClient) -> None:
    assert (await authorize_client.get("/health")).json() == {"status": "ok"}
    ready = await authorize_client.get("/ready")
    assert ready.json() == {"status": "ready", "checks": {"key_store": "ok"}}
    assert (await authorize_client.post("/health")).status_code == 405


@pytest.fixture
async def gateway_ingest() -> AsyncIterator[tuple[httpx.AsyncClient, FakePublisher]]:
    publisher = FakePublisher()
    settings = Settings(auth_mode="gateway", gateway_signing_secret="s" * 32)
    app = build_app(settings, publisher=publisher, idempotency=FakeIdempotencyStore())
    assert app.key_store is None and app.limiter is None
    async with app_client(lambda request: serve(request, Endpoint.SINGLE, app)) as client:
        yield client, publisher


async def test_gateway_mode_accepts_only_signed_principals(
    gateway_ingest: tuple[httpx.AsyncClient, FakePublisher],
) -> None:
    client, publisher = gateway_ingest
    body = orjson.dumps(seed_event())
    now = int(datetime.now(UTC).timestamp())
    good = sign_principal(PRINCIPAL, secret=SECRET, now=now, ttl=60)
    cases = {
        good: 202,
        sign_principal(PRINCIPAL, secret=b"z" * 32, now=now, ttl=60): 401,  # forged
        sign_principal(PRINCIPAL, secret=SECRET, now=now - 600, ttl=60): 401,  # expired
        "": 401,  # missing
    }
    for token, status in cases.items():
        headers = {"content-type": "application/json", "x-api-key": KEY}
        if token:
            headers[PRINCIPAL_HEADER] = token
        response = await client.post("/v1/events", content=body, headers=headers)
        assert response.status_code == status, response.text
        assert "x-ratelimit-limit" not in response.headers  # APISIX's job in this mode
    (record,) = publisher.published
    assert record.key == b"t1"
    assert orjson.loads(record.value)["api_key_id"] == "k1"


async def test_gateway_mode_refuses_a_principal_without_the_write_scope(
    gateway_ingest: tuple[httpx.AsyncClient, FakePublisher],
) -> None:
    client, _ = gateway_ingest
    now = int(datetime.now(UTC).timestamp())
    token = sign_principal(
        Principal("t1", "k1", ("events:read",), 5), secret=SECRET, now=now, ttl=60
    )
    response = await client.post(
        "/v1/events",
        content=orjson.dumps(seed_event()),
        headers={"content-type": "application/json", PRINCIPAL_HEADER: token},
    )
    assert response.status_code == 403
