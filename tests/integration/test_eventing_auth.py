"""Eventing mode against a JWKS served over loopback HTTP and keys in a real PostgreSQL.

The JWKS endpoint behaves like the API server's `/openid/v1/jwks`: it answers only a request
that carries a bearer token (the pod's own service account token, read from a file).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from audit_ingest.adapters.key_admin import revoke_key
from audit_ingest.adapters.postgres import PostgresKeyStore
from audit_ingest.auth_eventing import EventingAuthenticator
from audit_ingest.bootstrap import build_eventing_authenticator
from audit_ingest.errors import Forbidden, Unavailable
from audit_ingest.settings import Settings
from tests.stack import KeyFactory

pytestmark = pytest.mark.integration

ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = "serving.knative.dev/service/audit-ingest/ingest-eventing"
SENDER = "system:serviceaccount:team-crm:audit-oidc-eventing.knative.dev-trigger"
POD_TOKEN = "pod-service-account-token"
SIGNER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class JwksServer:
    def __init__(self) -> None:
        jwk: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(SIGNER.public_key(), as_dict=True)
        document = orjson.dumps({"keys": [{**jwk, "kid": "k-1", "use": "sig", "alg": "RS256"}]})
        self.requests: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                authorization = self.headers.get("authorization")
                server.requests.append(authorization)
                ok = self.path == "/openid/v1/jwks" and authorization == f"Bearer {POD_TOKEN}"
                self.send_response(200 if ok else 401)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(document if ok else b"{}")

            def log_message(self, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/openid/v1/jwks"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


def delivery_token(now: int) -> str:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": SENDER, "iat": now, "nbf": now}
    return jwt.encode({**claims, "exp": now + 600}, SIGNER, "RS256", {"kid": "k-1"})


def eventing_settings(
    settings: Settings, server: JwksServer, token_file: Path, key_id: str
) -> Settings:
    return Settings(
        database_url=settings.database_url,
        auth_mode="eventing",
        eventing_issuer=ISSUER,
        eventing_audience=AUDIENCE,
        eventing_jwks_url=server.url,
        eventing_jwks_token_file=str(token_file),
        eventing_bindings={SENDER: uuid.UUID(key_id)},
        key_cache_ttl_seconds=0.2,
        key_negative_cache_ttl_seconds=0,
    )


async def test_a_delivery_is_bound_to_its_tenant_and_revocation_applies(
    settings: Settings, issue_key: KeyFactory, jwks_server: JwksServer, tmp_path: Path
) -> None:
    issued = issue_key(rate_limit=321)
    token_file = tmp_path / "token"
    token_file.write_text(POD_TOKEN + "\n")
    config = eventing_settings(settings, jwks_server, token_file, issued.stored.id)
    store = PostgresKeyStore(config.database_url.get_secret_value())
    try:
        auth = build_eventing_authenticator(config, store)
        assert isinstance(auth, EventingAuthenticator)
        headers = {"authorization": f"Bearer {delivery_token(int(time.time()))}"}
        principal = await auth.authenticate(headers, datetime.now(UTC))
        assert (principal.tenant_id, principal.api_key_id, principal.rate_limit) == (
            issued.stored.tenant_id,
            issued.stored.id,
            321,
        )
        assert jwks_server.requests == [f"Bearer {POD_TOKEN}"]  # fetched once, with the pod token

        assert revoke_key(config.database_url.get_secret_value(), uuid.UUID(issued.stored.id))
        await asyncio.sleep(0.3)  # past the key cache TTL
        with pytest.raises(Forbidden, match="revoked"):
            await auth.authenticate(headers, datetime.now(UTC))
        assert len(jwks_server.requests) == 1  # the JWKS stayed cached
    finally:
        await store.close()


async def test_find_by_id(settings: Settings, issue_key: KeyFactory) -> None:
    issued = issue_key()
    store = PostgresKeyStore(settings.database_url.get_secret_value())
    try:
        found = await store.find_by_id(issued.stored.id)
        assert found is not None and found.tenant_id == issued.stored.tenant_id
        assert await store.find_by_id(str(uuid.uuid4())) is None
        assert await store.find_by_id("not-a-uuid") is None
    finally:
        await store.close()


async def test_a_jwks_that_refuses_the_pod_token_is_503(
    settings: Settings, issue_key: KeyFactory, jwks_server: JwksServer, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("stale-token")
    config = eventing_settings(settings, jwks_server, token_file, issue_key().stored.id)
    store = PostgresKeyStore(config.database_url.get_secret_value())
    try:
        auth = build_eventing_authenticator(config, store)
        headers = {"authorization": f"Bearer {delivery_token(int(time.time()))}"}
        with pytest.raises(Unavailable, match="signing keys"):
            await auth.authenticate(headers, datetime.now(UTC))
        token_file.write_text(POD_TOKEN)  # kubelet rotated the token: re-read on the next fetch
        principal = await auth.authenticate(headers, datetime.now(UTC))
        assert principal.api_key_id == str(config.eventing_bindings[SENDER])
    finally:
        await store.close()
