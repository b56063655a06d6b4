"""`serve.asgi_app`: a request without `Function-Execution-Id` gets one of ours before
functions-framework's middleware would draw one (12 `random.randrange` calls a request)."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
from functions_framework import execution_id

from audit_ingest.serve import ExecutionIds, asgi_app

NOOP = Path(__file__).resolve().parents[2] / "bench" / "functions" / "noop" / "main.py"


def _call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8080),
    }


def test_the_framework_draws_no_id_and_the_request_is_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse() -> str:
        raise AssertionError("functions-framework drew an execution id")

    monkeypatch.setattr(execution_id, "_generate_execution_id", refuse)
    app = asgi_app("noop", str(NOOP))
    sent = _call(app, _scope([(b"content-type", b"application/json")]))
    assert sent[0]["status"] == 202


def test_ids_are_ours_and_distinct_and_a_callers_id_is_kept() -> None:
    seen: list[list[tuple[bytes, bytes]]] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope.get("headers", []))

    counter = itertools.count()
    app = ExecutionIds(inner, lambda: f"id-{next(counter)}")
    sent_by_caller = [(b"function-execution-id", b"caller-1")]
    for headers in ([], [(b"x", b"1")], sent_by_caller):
        asyncio.run(app(_scope(list(headers)), None, None))
    assert seen[0] == [(b"function-execution-id", b"id-0")]
    assert seen[1] == [(b"x", b"1"), (b"function-execution-id", b"id-1")]
    assert seen[2] == sent_by_caller  # untouched, and no id drawn for it
    asyncio.run(app({"type": "lifespan"}, None, None))
    assert next(counter) == 2
