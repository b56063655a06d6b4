"""Real responses from the function processes, checked against openapi.yaml."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.client import post
from tests.openapi_check import validate_response
from tests.stack import KeyFactory
from tests.unit.samples import seed_event

pytestmark = pytest.mark.e2e


def check(method: str, path: str, response: httpx.Response) -> None:
    content_type = response.headers.get("content-type", "")
    body: Any = response.json() if "json" in content_type else response.text
    validate_response(
        method, path, response.status_code, content_type, body, headers=response.headers
    )


def test_responses_match_the_document(
    single_url: str, batch_url: str, issue_key: KeyFactory
) -> None:
    key = issue_key().secret
    single, batch = "/v1/events", "/v1/events/batch"
    cloudevent = {
        "specversion": "1.0",
        "id": "x-1",
        "source": "/app",
        "type": "com.app.x",
        "data": seed_event(),
    }
    cases: list[tuple[str, str, Any, str | None, str, int]] = [
        (single_url, single, seed_event(), key, "application/json", 202),
        (single_url, single, cloudevent, key, "application/cloudevents+json", 202),
        (single_url, single, {"actor": {}}, key, "application/json", 400),
        (single_url, single, seed_event(), None, "application/json", 401),
        (single_url, single, seed_event(), "aik_x", "application/json", 401),
        (single_url, single, seed_event(context={"x": "y" * 70_000}), key, "application/json", 413),
        (single_url, single, b"hi", key, "text/plain", 415),
        (batch_url, batch, {"events": [seed_event(), {}]}, key, "application/json", 202),
        (batch_url, batch, [cloudevent], key, "application/cloudevents-batch+json", 202),
        (batch_url, batch, {"events": [{}]}, key, "application/json", 400),
        (batch_url, batch, {"events": [seed_event()]}, None, "application/json", 401),
    ]
    for base, path, body, api_key, content_type, status in cases:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        response = post(base + path, content, api_key, content_type)
        assert response.status_code == status, (path, status, response.text[:200])
        check("POST", path, response)
    for path in ("/health", "/ready", "/metrics"):
        check("GET", path, httpx.get(single_url + path, timeout=10))
