"""Eventing mode: the Trigger's OIDC token, verified against a JWKS, bound to an API key.

The JWKS is served from memory by a `PyJWKClient` whose fetch is replaced, so PyJWT's own key
selection and caching run, and no test touches the network.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from audit_ingest.auth_eventing import EventingAuthenticator, KeyIdLookup
from audit_ingest.bootstrap import build_app
from audit_ingest.domain.keys import StoredKey
from audit_ingest.errors import Forbidden, KeyStoreUnavailable, Unauthenticated, Unavailable
from audit_ingest.http.endpoint import serve
from audit_ingest.http.routes import Endpoint
from audit_ingest.keycache import KeyResolver
from audit_ingest.settings import Settings
from tests.unit.clients import app_client
from tests.unit.fakes import FakeIdempotencyStore, FakeKeyStore, FakeLimiter, FakePublisher
from tests.unit.samples import seed_event, stored

ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = "serving.knative.dev/service/audit-ingest/ingest-eventing"
SENDER = "system:serviceaccount:team-crm:audit-oidc-eventing.knative.dev-trigger"
KEY_ID = "0190f7a4-1b2c-7d3e-8f40-123456789abc"
NOW = datetime(2027, 1, 1, tzinfo=UTC)


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SIGNER = rsa_key()
OTHER = rsa_key()


def jwk_of(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


def token(
    key: rsa.RSAPrivateKey = SIGNER, kid: str = "k-1", *, algorithm: str = "RS256", **claims: Any
) -> str:
    now = int(NOW.timestamp())
    body = {"iss": ISSUER, "aud": [AUDIENCE], "sub": SENDER, "iat": now, "nbf": now}
    body["exp"] = now + 600
    body.update(claims)
    return jwt.encode(
        {k: v for k, v in body.items() if v is not None}, key, algorithm, {"kid": kid}
    )


class InMemoryJwks(jwt.PyJWKClient):
    """PyJWKClient with its HTTP fetch replaced by a document in memory."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        super().__init__("https://jwks.invalid/openid/v1/jwks", lifespan=300, cooldown_duration=0)
        self.document: dict[str, Any] = {"keys": list(keys)}
        self.fetches = 0
        self.down = False

    def fetch_data(self) -> Any:
        self.fetches += 1
        if self.down:
            raise jwt.PyJWKClientConnectionError("connection refused")
        return self.document


class FakeKeysById:
    def __init__(self, *keys: StoredKey) -> None:
        self.keys = {key.id: key for key in keys}
        self.down = False
        self.calls = 0

    async def find_by_id(self, key_id: str) -> StoredKey | None:
        self.calls += 1
        if self.down:
            raise KeyStoreUnavailable("down")
        return self.keys.get(key_id)

    async def ping(self, timeout: float) -> bool:
        return not self.down

    async def close(self) -> None:
        return None


def authenticator(
    jwks: InMemoryJwks, store: FakeKeysById, bindings: dict[str, str] | None = None
) -> EventingAuthenticator:
    resolver = KeyResolver(KeyIdLookup(store), ttl=30, negative_ttl=5, stale=300, size=100)
    return EventingAuthenticator(
        jwks,
        resolver,
        issuer=ISSUER,
        audience=AUDIENCE,
        bindings={SENDER: KEY_ID} if bindings is None else bindings,
    )


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


@pytest.fixture
def jwks() -> InMemoryJwks:
    return InMemoryJwks(jwk_of(SIGNER, "k-1"))


@pytest.fixture
def store() -> FakeKeysById:
    return FakeKeysById(stored(id=KEY_ID, tenant_id="tenant-crm", rate_limit=77))


async def test_a_bound_sender_writes_as_its_key(jwks: InMemoryJwks, store: FakeKeysById) -> None:
    principal = await authenticator(jwks, store).authenticate(bearer(token()), NOW)
    assert (principal.tenant_id, principal.api_key_id, principal.rate_limit) == (
        "tenant-crm",
        KEY_ID,
        77,
    )


async def test_the_jwks_is_fetched_once_and_refreshed_for_a_new_key(
    jwks: InMemoryJwks, store: FakeKeysById
) -> None:
    auth = authenticator(jwks, store)
    for _ in range(5):
        await auth.authenticate(bearer(token()), NOW)
    assert jwks.fetches == 1
    rotated = rsa_key()
    jwks.document = {"keys": [jwk_of(SIGNER, "k-1"), jwk_of(rotated, "k-2")]}
    await auth.authenticate(bearer(token(rotated, "k-2")), NOW)
    assert jwks.fetches == 2


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Eventing deliveries only"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "Eventing deliveries only"),
        ({"authorization": "Bearer "}, "Eventing deliveries only"),
        (bearer("not-a-jwt"), "not valid"),
        (bearer(token(OTHER)), "not valid"),  # right kid, wrong key: forged
        (bearer(token(kid="unknown")), "not valid"),
        (bearer(token(aud=["serving.knative.dev/service/other/svc"])), "not valid"),
        (bearer(token(iss="https://evil.example")), "not valid"),
        (bearer(token(sub=None)), "not valid"),
        (bearer(token(exp=None)), "not valid"),
        (bearer(token(exp=int(NOW.timestamp()) - 60)), "expired"),
        (bearer(token(nbf=int(NOW.timestamp()) + 60)), "expired"),
        (bearer(token(iat=int(NOW.timestamp()) + 60, nbf=None)), "expired"),
    ],
)
async def test_refused_tokens_are_401(
    jwks: InMemoryJwks, store: FakeKeysById, headers: dict[str, str], message: str
) -> None:
    with pytest.raises(Unauthenticated, match=message):
        await authenticator(jwks, store).authenticate(headers, NOW)
    assert store.calls == 0  # nothing is looked up for an unproven sender


async def test_symmetric_and_unsigned_tokens_are_refused(
    jwks: InMemoryJwks, store: FakeKeysById
) -> None:
    public_pem = SIGNER.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = jwt.decode(token(), options={"verify_signature": False})
    # HS256 with the public key as secret (key confusion), and "none".
    forged = _hs256(claims, public_pem)
    unsigned = jwt.encode(claims, None, "none", {"kid": "k-1"})  # type: ignore[arg-type]  # "none": no key
    auth = authenticator(jwks, store)
    for bad in (forged, unsigned):
        with pytest.raises(Unauthenticated):
            await auth.authenticate(bearer(bad), NOW)


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    header = jwt.utils.base64url_encode(orjson.dumps({"alg": "HS256", "kid": "k-1"}))
    payload = jwt.utils.base64url_encode(orjson.dumps(claims))
    signing_input = header + b"." + payload
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + jwt.utils.base64url_encode(signature)).decode()


async def test_a_valid_token_of_an_unbound_sender_is_403(
    jwks: InMemoryJwks, store: FakeKeysById
) -> None:
    other = "system:serviceaccount:team-hr:audit-oidc-eventing.knative.dev-trigger"
    with pytest.raises(Forbidden, match="team-hr"):
        await authenticator(jwks, store).authenticate(bearer(token(sub=other)), NOW)
    assert store.calls == 0


@pytest.mark.parametrize(
    ("key", "error", "message"),
    [
        (stored(id=KEY_ID, is_active=False), Forbidden, "revoked"),
        (stored(id=KEY_ID, expires_at=NOW - timedelta(seconds=1)), Forbidden, "expired"),
        (stored(id=KEY_ID, scopes=("events:read",)), Forbidden, "scope"),
        (stored(id=str(uuid.uuid4())), Unauthenticated, "not valid"),  # bound id not found
    ],
)
async def test_the_bound_key_is_authorized_like_any_key(
    jwks: InMemoryJwks, key: StoredKey, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await authenticator(jwks, FakeKeysById(key)).authenticate(bearer(token()), NOW)


async def test_an_unreachable_jwks_is_503_not_401(store: FakeKeysById) -> None:
    jwks = InMemoryJwks(jwk_of(SIGNER, "k-1"))
    jwks.down = True
    with pytest.raises(Unavailable, match="signing keys"):
        await authenticator(jwks, store).authenticate(bearer(token()), NOW)


async def test_a_cached_key_survives_a_key_store_outage(
    jwks: InMemoryJwks, store: FakeKeysById
) -> None:
    auth = authenticator(jwks, store)
    await auth.authenticate(bearer(token()), NOW)
    store.down = True
    assert (await auth.authenticate(bearer(token()), NOW)).tenant_id == "tenant-crm"
    fresh = authenticator(jwks, store)
    with pytest.raises(KeyStoreUnavailable):
        await fresh.authenticate(bearer(token()), NOW)


def test_settings_of_eventing_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="EVENTING_ISSUER"):
        Settings(auth_mode="eventing")
    monkeypatch.setenv("AUTH_MODE", "eventing")
    monkeypatch.setenv("EVENTING_ISSUER", ISSUER)
    monkeypatch.setenv("EVENTING_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("EVENTING_BINDINGS", orjson.dumps({SENDER: KEY_ID}).decode())
    settings = Settings()
    assert {k: str(v) for k, v in settings.eventing_bindings.items()} == {SENDER: KEY_ID}
    monkeypatch.setenv("EVENTING_BINDINGS", orjson.dumps({SENDER: "not-a-uuid"}).decode())
    with pytest.raises(ValidationError, match="eventing_bindings"):
        Settings()
    monkeypatch.setenv("EVENTING_BINDINGS", orjson.dumps({"team-crm/audit": KEY_ID}).decode())
    with pytest.raises(ValidationError, match="system:serviceaccount"):
        Settings()


def eventing_settings() -> Settings:
    return Settings(
        auth_mode="eventing",
        eventing_issuer=ISSUER,
        eventing_audience=AUDIENCE,
        eventing_bindings={SENDER: uuid.UUID(KEY_ID)},
    )


def test_build_app_needs_a_key_store_that_finds_by_id() -> None:
    with pytest.raises(TypeError, match="by id"):
        build_app(eventing_settings(), publisher=FakePublisher(), key_store=FakeKeyStore())


class EventingStore(FakeKeysById):
    async def find(self, key_hash: str) -> StoredKey | None:
        raise AssertionError("eventing mode never looks keys up by hash")


@pytest.fixture
async def eventing_ingest(
    jwks: InMemoryJwks,
) -> AsyncIterator[tuple[httpx.AsyncClient, FakePublisher, FakeLimiter]]:
    publisher, limiter = FakePublisher(), FakeLimiter()
    store = EventingStore(stored(id=KEY_ID, tenant_id="tenant-crm", rate_limit=77))
    app = build_app(
        eventing_settings(),
        publisher=publisher,
        key_store=store,
        limiter=limiter,
        idempotency=FakeIdempotencyStore(),
    )
    assert isinstance(app.authenticator, EventingAuthenticator)
    app.authenticator._keys = jwks  # the cluster's JWKS, served from memory
    async with app_client(lambda request: serve(request, Endpoint.SINGLE, app)) as client:
        yield client, publisher, limiter


def cloudevent_headers(authorization: str | None) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": "/apis/v1/namespaces/team-crm/crm",
        "ce-type": "com.example.user.created",
        # Extension attributes are the event's own claims: never a source of identity.
        "ce-tenantid": "victim-tenant",
    }
    if authorization:
        headers["authorization"] = authorization
    return headers


async def test_a_trigger_delivery_is_stored_under_the_bound_tenant(
    eventing_ingest: tuple[httpx.AsyncClient, FakePublisher, FakeLimiter],
) -> None:
    client, publisher, limiter = eventing_ingest
    now = int(datetime.now(UTC).timestamp())
    good = token(iat=now, nbf=now, exp=now + 600)
    body = orjson.dumps(seed_event())
    response = await client.post("/", content=body, headers=cloudevent_headers(f"Bearer {good}"))
    assert response.status_code == 202, response.text
    assert response.headers["x-ratelimit-limit"] == "77"  # the bound key's quota applies
    (record,) = publisher.published
    assert record.key == b"tenant-crm"
    value = orjson.loads(record.value)
    assert (value["tenant_id"], value["api_key_id"]) == ("tenant-crm", KEY_ID)
    assert limiter.counts == {KEY_ID: 1}


async def test_eventing_mode_refuses_api_keys_and_foreign_tenants(
    eventing_ingest: tuple[httpx.AsyncClient, FakePublisher, FakeLimiter],
) -> None:
    client, publisher, _ = eventing_ingest
    now = int(datetime.now(UTC).timestamp())
    good = token(iat=now, nbf=now, exp=now + 600)
    body = orjson.dumps(seed_event())
    headers = {**cloudevent_headers(None), "x-api-key": "aik_whatever"}
    assert (await client.post("/", content=body, headers=headers)).status_code == 401
    spoofed = orjson.dumps({**seed_event(), "tenant_id": "victim-tenant"})
    response = await client.post("/", content=spoofed, headers=cloudevent_headers(f"Bearer {good}"))
    assert response.status_code == 400, response.text
    assert publisher.published == []
