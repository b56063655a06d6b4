"""Reading error answers: statuses to exceptions, Retry-After, bodies that are not problems."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from mock_server import MockServer, make_event

from audit_ingest_sdk import AuditClient, AuditIngestError, ServerError
from audit_ingest_sdk._errors import error_from_response, parse_retry_after
from audit_ingest_sdk._models import UTC


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    soon = datetime.now(UTC) + timedelta(seconds=30)
    from_date = parse_retry_after(format_datetime(soon, usegmt=True))
    assert from_date is not None
    assert 25 <= from_date <= 30
    for unusable in (None, "", "soon", "inf", "nan"):
        assert parse_retry_after(unusable) is None


def test_an_error_without_a_problem_body_still_maps_by_status() -> None:
    response = httpx.Response(
        502, content=b"<html>bad gateway</html>", headers={"x-request-id": "gw-1"}
    )
    error = error_from_response(response)
    assert isinstance(error, ServerError)
    assert (error.status, error.request_id, error.problem) == (502, "gw-1", None)
    assert "502 Bad Gateway" in str(error)


def test_gateway_errors_are_retried(
    client: AuditClient, server: MockServer, sleeps: list[float]
) -> None:
    server.answer(httpx.Response(502), httpx.Response(504))
    client.send(make_event())
    assert len(server.seen) == 3
    assert len(sleeps) == 2


def test_a_2xx_without_the_expected_body_is_an_error(
    client: AuditClient, server: MockServer
) -> None:
    server.answer(httpx.Response(202, content=b"not json"))
    with pytest.raises(AuditIngestError, match="unexpected answer"):
        client.send(make_event())
