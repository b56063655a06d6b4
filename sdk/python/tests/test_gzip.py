"""gzip request bodies: only when enabled, only above the threshold."""

from __future__ import annotations

import gzip
import json

import httpx
from mock_server import MockServer, make_event, problem

from audit_ingest_sdk import AuditClient


def gzip_client(server: MockServer, **options: object) -> AuditClient:
    http = httpx.Client(transport=httpx.MockTransport(server.handler))
    return AuditClient("aik_test", "http://x", http_client=http, **options)  # type: ignore[arg-type]


def test_large_bodies_are_gzipped_when_enabled(server: MockServer) -> None:
    client = gzip_client(server, gzip=True)
    big = make_event(context={"blob": "x" * 4000})
    client.send(big)
    client.send_batch([make_event(i) for i in range(50)])
    for seen in server.seen:
        assert seen.headers["content-encoding"] == "gzip"
        assert len(seen.raw) < len(gzip.decompress(seen.raw))
        assert json.loads(gzip.decompress(seen.raw)) == seen.body
    assert server.seen[0].body["context"] == {"blob": "x" * 4000}
    assert len(server.batches()[0]) == 50


def test_small_bodies_and_disabled_gzip_are_sent_plain(server: MockServer) -> None:
    gzip_client(server, gzip=True).send(make_event())
    gzip_client(server).send(make_event(context={"blob": "x" * 4000}))
    gzip_client(server, gzip=True, gzip_threshold=10**6).send(
        make_event(context={"blob": "x" * 4000})
    )
    assert [seen.headers.get("content-encoding") for seen in server.seen] == [None, None, None]
    assert all(seen.raw.startswith(b"{") for seen in server.seen)


def test_gzipped_retries_resend_identical_bytes(server: MockServer) -> None:
    sleeps: list[float] = []
    client = gzip_client(server, gzip=True, sleep=sleeps.append)
    server.answer(problem(503, retry_after="1"))
    client.send(make_event(context={"blob": "y" * 3000}))
    first, second = server.seen
    assert first.raw == second.raw
    assert first.headers["content-encoding"] == "gzip"
