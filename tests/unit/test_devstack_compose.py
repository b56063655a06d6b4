"""`make run`'s composition (devstack.compose): both functions on one port, and a 404 that
names both ingest paths (a single function's 404 names only its own)."""

from __future__ import annotations

import logging

import httpx
import pytest
from devstack.compose import build, route

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("path", "function"),
    [
        ("/v1/events/batch", "batch"),
        ("/v1/events/batch/", "batch"),
        ("/v1/events", "single"),
        ("/v1/events/", "single"),
        ("/", "single"),
        ("/health", "single"),
        ("/ready", "single"),
        ("/metrics", "single"),
        ("/v1/event", "none"),
        ("/v1/events/batch/x", "none"),
        ("/v2/events", "none"),
    ],
)
def test_route(path: str, function: str) -> None:
    assert route(path) == function


async def _request(method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=build())
    async with httpx.AsyncClient(transport=transport, base_url="http://local") as client:
        return await client.request(method, path, headers={"X-Request-Id": "compose-test"})


async def test_an_unknown_path_names_both_ingest_paths() -> None:
    response = await _request("POST", "/v1/event")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "compose-test"
    problem = response.json()
    assert problem["status"] == 404
    assert problem["instance"] == "/v1/event"
    assert problem["request_id"] == "compose-test"
    assert "POST /v1/events and POST /v1/events/batch" in problem["detail"]
    assert "this function" not in problem["detail"]


@pytest.mark.parametrize(
    ("path", "endpoint"), [("/v1/events", "single"), ("/v1/events/batch", "batch"), ("/", "single")]
)
async def test_ingest_paths_reach_their_function(
    path: str, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="audit_ingest.access")
    response = await _request("GET", path)  # the function's own 405: no app is built
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    [access] = [r for r in caplog.records if r.name == "audit_ingest.access"]
    assert access.__dict__["endpoint"] == endpoint


async def test_probes_reach_ingest_event() -> None:
    health = await _request("GET", "/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
