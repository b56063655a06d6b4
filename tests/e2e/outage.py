"""Helpers for the e2e tests that stop the session's broker: it and the functions come back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from devstack import LocalStack

from tests.functions import FunctionProcess


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} is not ready again"
        time.sleep(0.2)


@contextmanager
def restored_broker(stack: LocalStack, others: dict[str, FunctionProcess]) -> Iterator[None]:
    """Whatever happens in the block, the session's broker and functions are back after it."""
    try:
        yield
    finally:
        if not stack.kafka.is_running():
            stack.kafka.start()
        for function in others.values():
            wait_ready(function.url)
