"""`serve.asgi_app`: requests for the function skip functions-framework's per-request stack
(`DirectCalls`) and get the answers that stack gives, byte for byte; the rest is the
framework's."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

import pytest
from functions_framework import execution_id
from functions_framework.aio import create_asgi_app

from audit_ingest.serve import DirectCalls, asgi_app

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = {
    "ingest_event": REPO / "functions" / "ingest_event" / "main.py",
    "ingest_batch": REPO / "functions" / "ingest_batch" / "main.py",
    "authorize": REPO / "functions" / "authorize" / "main.py",
    "noop": REPO / "bench" / "functions" / "noop" / "main.py",
}

# A function that shows what it was given, answers with the status a header asks for, and
# lets an exception out on /crash: what a function sees and answers must not depend on which
# path served it.
PROBE = """
from functions_framework import aio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


@aio.http
async def probe(request: Request) -> Response:
    if request.url.path == "/crash":
        raise RuntimeError("the probe's defect")
    if request.url.path == "/not-a-response":
        return {"a": "dict"}
    headers = sorted(
        (name, value) for name, value in request.headers.items()
        if name != "function-execution-id"
    )
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": headers,
            "body": (await request.body()).decode(),
        },
        status_code=int(request.headers.get("x-status", "200")),
        headers={"x-echo": request.headers.get("x-echo", "-")},
    )
"""
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "PROPFIND")
PATHS = (
    "/",
    "/v1/events",
    "/v1/events/batch/",
    "/robots.txt",
    "/favicon.ico",
    "/robots.txt/x",
    "/a%20b",
    "/crash",
)


def _scope(
    method: str, path: str, headers: list[tuple[bytes, bytes]], root_path: str = ""
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"q=1&r=2",
        "root_path": root_path,
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8080),
    }


def _call(app: Any, scope: dict[str, Any], body: bytes = b"") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    chunks = [body[:3], body[3:]]

    async def receive() -> dict[str, Any]:
        if chunks:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    source = tmp_path / "main.py"
    source.write_text(PROBE)
    return source


def test_every_method_and_path_gets_the_frameworks_answer(
    probe: Path, caplog: pytest.LogCaptureFixture
) -> None:
    direct = asgi_app("probe", str(probe))
    framework = create_asgi_app("probe", str(probe), "http")  # type: ignore[no-untyped-call]
    assert isinstance(direct, DirectCalls)
    headers = [(b"content-type", b"application/json"), (b"x-echo", b"e"), (b"x-status", b"202")]
    compared = 0
    for method, path, root in itertools.product(METHODS, PATHS, ("", "/api")):
        scope = _scope(method, f"{root}{path}", headers, root)
        with caplog.at_level(logging.ERROR):
            caplog.clear()
            ours = _call(direct, dict(scope), b'{"k": "v"}')
            our_log = [r.getMessage() for r in caplog.records]
            caplog.clear()
            theirs = _call(framework, dict(scope), b'{"k": "v"}')
            their_log = [r.getMessage() for r in caplog.records]
        assert ours == theirs, (method, root, path)
        # The crash answer's log line: the same text, traceback frames aside.
        assert [line.splitlines()[0] for line in our_log] == [
            line.splitlines()[0] for line in their_log
        ], (method, path)
        compared += 1
    assert compared == len(METHODS) * len(PATHS) * 2


def test_the_function_is_served_directly_and_the_frameworks_routes_by_it(
    probe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = asgi_app("probe", str(probe))
    drawn: list[str] = []
    draw = execution_id._generate_execution_id

    def counted() -> str:
        drawn.append(draw())  # type: ignore[no-untyped-call]
        return drawn[-1]

    # functions-framework's middleware draws an execution id for every request it handles.
    monkeypatch.setattr(execution_id, "_generate_execution_id", counted)
    sent = _call(app, _scope("POST", "/v1/events", [(b"x-status", b"202")]))
    assert sent[0]["status"] == 202
    assert drawn == []
    assert _call(app, _scope("GET", "/robots.txt", []))[0]["status"] == 404
    assert len(drawn) == 1
    assert _call(app, _scope("TRACE", "/v1/events", []))[0]["status"] == 405
    assert len(drawn) == 2


def test_a_result_that_is_not_a_response_is_a_logged_500(
    probe: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        sent = _call(asgi_app("probe", str(probe)), _scope("POST", "/not-a-response", []))
    assert sent[0]["status"] == 500
    assert sent[1]["body"] == b"Internal Server Error"
    assert "probe returned dict" in caplog.text


@pytest.mark.parametrize("target", sorted(FUNCTIONS))
def test_every_function_is_served_directly(target: str) -> None:
    # Fails when a functions-framework upgrade lays its app out differently: the service would
    # still answer (through the framework's stack), at the old cost.
    app = asgi_app(target, str(FUNCTIONS[target]))
    assert isinstance(app, DirectCalls)
    assert app.function.__name__ == target
    assert app.methods >= {"GET", "HEAD", "POST"}
    assert app.framework_paths == {"/robots.txt", "/favicon.ico"}


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_execution_id_logging_keeps_the_frameworks_stack(
    probe: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("LOG_EXECUTION_ID", value)
    app = asgi_app("probe", str(probe))
    assert not isinstance(app, DirectCalls)
    monkeypatch.setenv("LOG_EXECUTION_ID", "false")
    assert isinstance(asgi_app("probe", str(probe)), DirectCalls)
