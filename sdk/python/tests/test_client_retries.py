"""AuditClient.send: retries (Retry-After, backoff, deadline), no retry on 4xx, idempotency."""

from __future__ import annotations

import httpx
import pytest
from mock_server import MakeClient, MockServer, field_error, make_event, problem

from audit_ingest_sdk import (
    APIStatusError,
    AuditClient,
    AuthenticationError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
    TransportError,
    UnsupportedMediaTypeError,
    ValidationError,
)


def test_send_posts_the_event_with_key_and_idempotency_header(
    client: AuditClient, server: MockServer
) -> None:
    accepted = client.send(make_event())
    assert accepted.received_at == "2024-12-05T10:00:00.123Z"
    (seen,) = server.seen
    assert seen.path == "/v1/events"
    assert seen.headers["x-api-key"] == "aik_test"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["user-agent"].startswith("audit-ingest-sdk-python/")
    assert seen.headers["idempotency-key"] == seen.body["idempotency_key"]
    assert seen.body["actor"] == {"id": "user-0", "type": "user"}


def test_429_then_503_are_retried_after_retry_after_with_the_same_key(
    client: AuditClient, server: MockServer, sleeps: list[float]
) -> None:
    server.answer(problem(429, retry_after="3"), problem(503, retry_after="2"))
    accepted = client.send(make_event())
    assert accepted.event_id
    assert sleeps == [3.0, 2.0]
    keys = {seen.headers["idempotency-key"] for seen in server.seen}
    bodies = {seen.raw for seen in server.seen}
    assert len(server.seen) == 3
    assert len(keys) == 1
    assert len(bodies) == 1


def test_without_retry_after_the_backoff_is_full_jitter_growing_exponentially(
    make_client: MakeClient, server: MockServer, sleeps: list[float]
) -> None:
    policy = RetryPolicy(max_retries=6, initial_backoff=0.5, max_backoff=4.0, deadline=1000)
    client = make_client(retry=policy)
    for _ in range(200):
        sleeps.clear()
        server.answer(*[problem(503)] * 6)
        client.send(make_event())
        assert len(sleeps) == 6
        for attempt, slept in enumerate(sleeps):
            assert 0 <= slept <= min(4.0, 0.5 * 2**attempt)
    # Jitter spreads the waits over the whole window rather than fixing them.
    assert len({round(s, 6) for s in sleeps}) > 1


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ValidationError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, APIStatusError),
        (413, PayloadTooLargeError),
        (415, UnsupportedMediaTypeError),
        (500, ServerError),
    ],
)
def test_client_errors_and_500_are_not_retried(
    client: AuditClient, server: MockServer, sleeps: list[float], status: int, kind: type
) -> None:
    server.answer(problem(status, retry_after="1", request_id="req-42"))
    with pytest.raises(kind) as raised:
        client.send(make_event())
    assert len(server.seen) == 1
    assert sleeps == []
    error = raised.value
    assert type(error) is kind
    assert (error.status, error.request_id, error.attempts) == (status, "req-42", 1)
    assert error.problem is not None
    assert error.problem["detail"] == f"detail of {status}"


def test_validation_error_carries_the_field_errors(client: AuditClient, server: MockServer) -> None:
    server.answer(problem(400, errors=[field_error("actor.id", "type")]))
    with pytest.raises(ValidationError) as raised:
        client.send(make_event())
    (error,) = raised.value.errors
    assert (error.field, error.code) == ("actor.id", "type")
    assert "detail of 400" in str(raised.value)


def test_retries_exhausted_raise_with_the_last_retry_after(
    make_client: MakeClient, server: MockServer, sleeps: list[float]
) -> None:
    client = make_client(max_retries=2)
    server.answer(*[problem(429, retry_after="1")] * 3)
    with pytest.raises(RateLimitedError) as raised:
        client.send(make_event())
    assert raised.value.retry_after == 1.0
    assert raised.value.attempts == 3
    assert len(server.seen) == 3
    assert sleeps == [1.0, 1.0]
    assert "after 3 attempts" in str(raised.value)


def test_a_retry_after_beyond_the_deadline_stops_at_once(
    server: MockServer, sleeps: list[float]
) -> None:
    http = httpx.Client(transport=httpx.MockTransport(server.handler))
    policy = RetryPolicy(max_retries=5, deadline=10)
    client = AuditClient(
        "aik_test", "http://x", http_client=http, retry=policy, sleep=sleeps.append
    )
    server.answer(problem(503, retry_after="30"))
    with pytest.raises(ServiceUnavailableError) as raised:
        client.send(make_event())
    assert raised.value.retry_after == 30.0
    assert sleeps == []
    assert len(server.seen) == 1


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow connect"),
        httpx.ReadTimeout("slow answer"),
        httpx.ReadError("connection reset by peer"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
)
def test_network_failures_are_retried_with_the_same_key(
    client: AuditClient, server: MockServer, sleeps: list[float], failure: Exception
) -> None:
    server.answer(failure, failure)
    client.send(make_event())
    assert len(server.seen) == 3
    assert len(sleeps) == 2
    assert len({seen.headers["idempotency-key"] for seen in server.seen}) == 1


def test_network_failures_exhausted_raise_transport_error(
    make_client: MakeClient, server: MockServer, sleeps: list[float]
) -> None:
    client = make_client(max_retries=1)
    server.answer(httpx.ConnectError("refused"), httpx.ConnectError("refused"))
    with pytest.raises(TransportError) as raised:
        client.send(make_event())
    assert raised.value.retryable
    assert raised.value.status is None
    assert isinstance(raised.value.__cause__, httpx.ConnectError)
    assert raised.value.attempts == 2


def test_max_retries_zero_makes_one_attempt(
    make_client: MakeClient, server: MockServer, sleeps: list[float]
) -> None:
    client = make_client(max_retries=0)
    server.answer(problem(503, retry_after="1"))
    with pytest.raises(ServiceUnavailableError):
        client.send(make_event())
    assert len(server.seen) == 1


def test_each_send_has_its_own_key_and_a_given_key_is_used(
    client: AuditClient, server: MockServer
) -> None:
    client.send(make_event(0))
    client.send(make_event(1))
    client.send(make_event(2), idempotency_key="order-42")
    client.send(make_event(3, idempotency_key="in-event"))
    keys = [seen.headers["idempotency-key"] for seen in server.seen]
    assert keys[0] != keys[1]
    assert keys[2:] == ["order-42", "in-event"]
    assert [seen.body["idempotency_key"] for seen in server.seen] == keys


def test_policies_that_would_retry_client_errors_are_refused() -> None:
    with pytest.raises(ValueError, match="never retried"):
        RetryPolicy(retry_statuses=frozenset({400, 503}))
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)


def test_api_key_and_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_INGEST_API_KEY", "aik_env")
    monkeypatch.setenv("AUDIT_INGEST_URL", "http://env.test/")
    with AuditClient() as client:
        assert client.config.api_key == "aik_env"
        assert client.config.url("/v1/events") == "http://env.test/v1/events"
    monkeypatch.delenv("AUDIT_INGEST_API_KEY")
    with pytest.raises(ValueError, match="api_key is required"):
        AuditClient()
