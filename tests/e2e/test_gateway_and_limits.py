"""Gateway mode and rate limits, with real processes.

- `authorize` (APISIX forward-auth's target) over HTTP against real PostgreSQL;
- an ingest function in gateway mode fed the headers `authorize` returns, as APISIX would;
- inline rate limits end to end through `make run`'s composition (devstack.compose).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from devstack.ports import free_ports

from audit_ingest.adapters.key_admin import revoke_key
from audit_ingest.domain.gateway_token import (
    KEY_ID_HEADER,
    PRINCIPAL_HEADER,
    RATE_LIMIT_HEADER,
    TENANT_HEADER,
    sign_principal,
    verify_principal,
)
from audit_ingest.domain.principal import Principal
from audit_ingest.settings import Settings
from tests.functions import FunctionProcess, start_function, stop_function
from tests.stack import REPO, KeyFactory, TopicReader
from tests.unit.samples import seed_event

pytestmark = pytest.mark.e2e
SECRET = "gateway-secret-for-e2e-tests-0123456789"
UPSTREAM_HEADERS = (PRINCIPAL_HEADER, TENANT_HEADER, KEY_ID_HEADER, RATE_LIMIT_HEADER)


@pytest.fixture(scope="module")
def authorize_fn(function_env: dict[str, str], log_dir: Path) -> Iterator[FunctionProcess]:
    env = {**function_env, "GATEWAY_SIGNING_SECRET": SECRET, "K_SERVICE": "authorize"}
    function = start_function("authorize", env, log_dir)
    yield function
    stop_function(function)


@pytest.fixture(scope="module")
def gateway_ingest(function_env: dict[str, str], log_dir: Path) -> Iterator[FunctionProcess]:
    env = {
        **function_env,
        "AUTH_MODE": "gateway",
        "GATEWAY_SIGNING_SECRET": SECRET,
        "K_SERVICE": "ingest-event-gw",
    }
    env.pop("DATABASE_URL", None)  # gateway mode must not need the key store
    function = start_function("ingest_event", env, log_dir)
    yield function
    stop_function(function)


def forward_auth(authorize_url: str, key: str | None) -> httpx.Response:
    headers = {"x-request-id": "gw-1"}
    if key is not None:
        headers["x-api-key"] = key
    return httpx.get(f"{authorize_url}/authorize", headers=headers, timeout=10)


def test_authorize_statuses_headers_and_signature(
    authorize_fn: FunctionProcess, issue_key: KeyFactory, settings: Settings
) -> None:
    issued = issue_key(rate_limit=77)
    response = forward_auth(authorize_fn.url, issued.secret)
    assert response.status_code == 200, response.text
    assert response.headers[TENANT_HEADER] == issued.stored.tenant_id
    assert response.headers[KEY_ID_HEADER] == issued.stored.id
    assert response.headers[RATE_LIMIT_HEADER] == "77"
    assert response.headers["x-request-id"] == "gw-1"
    principal = verify_principal(
        response.headers[PRINCIPAL_HEADER], secret=SECRET.encode(), now=int(time.time())
    )
    assert principal.tenant_id == issued.stored.tenant_id and principal.rate_limit == 77

    revoked = issue_key()
    revoke_key(settings.database_url.get_secret_value(), uuid.UUID(revoked.stored.id))
    read_only = issue_key(scopes=("events:read",))
    for key, status in {
        None: 401,
        "aik_nope": 401,
        "aik_" + "B" * 46: 401,
        revoked.secret: 403,
        read_only.secret: 403,
    }.items():
        refused = forward_auth(authorize_fn.url, key)
        assert refused.status_code == status, (key, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert PRINCIPAL_HEADER.lower() not in refused.headers
    assert httpx.get(f"{authorize_fn.url}/ready", timeout=10).json()["status"] == "ready"


def test_gateway_mode_ingest_accepts_only_what_authorize_signed(
    authorize_fn: FunctionProcess,
    gateway_ingest: FunctionProcess,
    issue_key: KeyFactory,
    settings: Settings,
) -> None:
    issued = issue_key()
    granted = forward_auth(authorize_fn.url, issued.secret)
    upstream = {name: granted.headers[name] for name in UPSTREAM_HEADERS}
    url = f"{gateway_ingest.url}/v1/events"
    body = orjson.dumps(seed_event())
    plain = {"content-type": "application/json"}
    accepted = httpx.post(url, content=body, headers={**plain, **upstream}, timeout=20)
    assert accepted.status_code == 202, accepted.text

    now = int(datetime.now(UTC).timestamp())
    victim = Principal(str(uuid.uuid4()), "k", ("events:write",), 10)
    forged = sign_principal(victim, secret=b"not-the-secret-" * 3, now=now, ttl=60)
    expired = sign_principal(victim, secret=SECRET.encode(), now=now - 3600, ttl=60)
    for headers in (
        {PRINCIPAL_HEADER: forged},
        {PRINCIPAL_HEADER: expired},
        {"x-api-key": issued.secret},  # bypassing the gateway with a valid key
        {},
    ):
        refused = httpx.post(url, content=body, headers={**plain, **headers}, timeout=20)
        assert refused.status_code == 401, (headers, refused.text)

    reader = TopicReader(settings.kafka_bootstrap_servers, settings.kafka_topic)
    try:
        mine = reader.read_until(
            lambda seen: any(m.key() == issued.stored.tenant_id.encode() for m in seen)
        )
    finally:
        reader.close()
    stored = [
        orjson.loads(m.value() or b"") for m in mine if m.key() == issued.stored.tenant_id.encode()
    ]
    assert [value["event_id"] for value in stored] == [accepted.json()["event_id"]]
    assert not [m for m in mine if m.key() == victim.tenant_id.encode()]
    ready = httpx.get(f"{gateway_ingest.url}/ready", timeout=10).json()
    assert ready == {"status": "ready", "checks": {"broker": "ok"}}


@pytest.fixture(scope="module")
def composition(function_env: dict[str, str], log_dir: Path) -> Iterator[str]:
    (port,) = free_ports(1)
    log = log_dir / "compose.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.compose", "--port", str(port)],
        cwd=REPO,
        env=function_env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(log.read_text()) from None
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(30)


def test_inline_rate_limit_through_the_local_composition(
    composition: str, issue_key: KeyFactory, settings: Settings
) -> None:
    limited = issue_key(rate_limit=5)
    other = issue_key(rate_limit=5)
    headers = {"content-type": "application/json"}
    body = orjson.dumps(seed_event())
    seconds_left = 60 - time.time() % 60
    if seconds_left < 10:  # keep all requests in one fixed window: wait for the next one
        time.sleep(seconds_left + 0.1)
    statuses = []
    for _ in range(5):
        response = httpx.post(
            f"{composition}/v1/events",
            content=body,
            headers={**headers, "x-api-key": limited.secret},
            timeout=20,
        )
        statuses.append(response.status_code)
        assert response.headers["x-ratelimit-limit"] == "5"
        assert int(response.headers["x-ratelimit-reset"]) <= 60
    refused = httpx.post(
        f"{composition}/v1/events/batch",
        content=orjson.dumps({"events": [seed_event()]}),
        headers={**headers, "x-api-key": limited.secret},
        timeout=20,
    )
    assert statuses == [202] * 5
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.headers["content-type"] == "application/problem+json"
    unaffected = httpx.post(
        f"{composition}/v1/events",
        content=body,
        headers={**headers, "x-api-key": other.secret},
        timeout=20,
    )
    assert unaffected.status_code == 202
    assert unaffected.headers["x-ratelimit-remaining"] == "4"

    revoked = issue_key()
    revoke_key(settings.database_url.get_secret_value(), uuid.UUID(revoked.stored.id))
    for key, status in ((revoked.secret, 403), ("aik_" + "C" * 46, 401)):
        response = httpx.post(
            f"{composition}/v1/events",
            content=body,
            headers={**headers, "x-api-key": key},
            timeout=20,
        )
        assert response.status_code == status
