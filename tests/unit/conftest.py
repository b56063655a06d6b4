"""Unit tests do no I/O: any attempt to open a network connection fails the test.

Attempts are refused and also recorded, so a library that swallows the refusal (redis-py turns
it into a ConnectionError, which the limiter treats as an outage) still fails the test.
"""

import socket
from collections.abc import Iterator

import pytest


class NetworkAccessError(AssertionError):
    pass


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args[1:] or kwargs))
        raise NetworkAccessError(f"unit tests must not open connections: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield
    assert attempts == [], f"a unit test tried to open connections: {attempts}"
