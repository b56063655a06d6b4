"""The C implementations the service's speed rests on are installed, and the libraries use them.

Each is an optional accelerator its library falls back from silently, so losing one (an extra
dropped from pyproject.toml, a platform without its wheel) would cost CPU per request without
failing anything else: redis-py's hiredis (parses the replies of every rate-limit hit and
idempotency claim in C), uvicorn's uvloop and httptools (the event loop and the HTTP parser
its `auto` settings pick, as the server's worker does).
"""

from __future__ import annotations

import importlib.util

import pytest
from redis.asyncio.connection import Connection
from redis.utils import HIREDIS_AVAILABLE

pytestmark = pytest.mark.unit


def test_redis_py_uses_hiredis() -> None:
    assert HIREDIS_AVAILABLE
    connection = Connection()
    assert type(connection._parser).__name__ == "_AsyncHiredisParser"


@pytest.mark.parametrize("module", ["uvloop", "httptools"])
def test_uvicorn_auto_finds_its_accelerators(module: str) -> None:
    assert importlib.util.find_spec(module) is not None
