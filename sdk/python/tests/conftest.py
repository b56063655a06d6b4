"""Fixtures: clients wired to a MockServer; waits between attempts recorded, not slept."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from mock_server import MockServer

from audit_ingest_sdk import AsyncAuditClient, AuditClient

API_KEY = "aik_test"
BASE_URL = "http://audit.test"


@pytest.fixture
def server() -> MockServer:
    return MockServer()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(server: MockServer, sleeps: list[float]) -> Iterator[Callable[..., AuditClient]]:
    """AuditClient(**options) wired to the server, recording its waits in `sleeps`."""
    made: list[AuditClient] = []

    def make(**options: Any) -> AuditClient:
        http = httpx.Client(transport=httpx.MockTransport(server.handler))
        client = AuditClient(API_KEY, BASE_URL, http_client=http, sleep=sleeps.append, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(server: MockServer, sleeps: list[float]) -> Iterator[AuditClient]:
    http = httpx.Client(transport=httpx.MockTransport(server.handler))
    with AuditClient(API_KEY, BASE_URL, http_client=http, sleep=sleeps.append) as made:
        yield made
    http.close()


@pytest.fixture
async def async_client(server: MockServer, sleeps: list[float]) -> AsyncIterator[AsyncAuditClient]:
    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    http = httpx.AsyncClient(transport=httpx.MockTransport(server.handler))
    async with AsyncAuditClient(API_KEY, BASE_URL, http_client=http, sleep=record) as made:
        yield made
    await http.aclose()
