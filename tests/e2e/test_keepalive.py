"""The function keeps an idle connection longer than the proxy pools in front of it.

A proxy (queue-proxy, APISIX, a load balancer) reuses pooled connections for up to its idle
timeout (APISIX: 60 s). If the function closed an idle connection first, a request the proxy
writes on it as it closes is lost on the wire, and the proxy answers 502 for a POST it may not
replay. functions-framework's own CLI closes after 2 s; `audit-ingest-serve` (the image's
command, and the tests' `start_function`) keeps `HTTP_KEEPALIVE_SECONDS` (620 s).

Raw sockets, so nothing between the test and the server opens a fresh connection behind its
back: the second request goes on the very connection the first used.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.functions import start_function, stop_function

pytestmark = pytest.mark.e2e

IDLE_S = 3.0  # longer than gunicorn's default keep-alive (2 s), the CLI's


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def _health(sock: socket.socket) -> bytes:
    """One GET /health on `sock`; the raw answer (b"" when the server had closed it)."""
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: function\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                return answer
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "closed mid-answer"
            body += chunk
        return head + b"\r\n\r\n" + body
    except (ConnectionResetError, BrokenPipeError):
        return b""


def test_an_idle_connection_outlives_the_frameworks_default(single_url: str) -> None:
    with _connect(single_url) as sock:
        first = _health(sock)
        assert first.startswith(b"HTTP/1.1 200"), first[:80]
        assert b"connection: close" not in first.lower()
        time.sleep(IDLE_S)
        second = _health(sock)
        assert second.startswith(b"HTTP/1.1 200"), (
            f"the function closed a connection idle for {IDLE_S}s: a proxy's pooled request "
            f"sent on it would be a 502 ({second[:80]!r})"
        )


def test_the_keepalive_is_the_setting(function_env: dict[str, str], log_dir: Path) -> None:
    """With HTTP_KEEPALIVE_SECONDS=1 the same idle second closes it: the setting is what holds."""
    folder = log_dir / "keepalive-1"
    folder.mkdir(exist_ok=True)
    env = {**function_env, "HTTP_KEEPALIVE_SECONDS": "1"}
    function = start_function("ingest_event", env, folder)
    try:
        with _connect(function.url) as sock:
            assert _health(sock).startswith(b"HTTP/1.1 200")
            time.sleep(IDLE_S)
            assert _health(sock) == b"", "a 1 s keep-alive kept the connection for 3 s"
    finally:
        stop_function(function)
