"""A small bounded polling helper: every wait in devstack has a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable

from devstack.errors import ServiceStartError


def wait_until(
    condition: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    retry_on: tuple[type[Exception], ...] = (),
    abort: Callable[[], str | None] | None = None,
    interval: float = 0.05,
    max_interval: float = 0.2,
) -> None:
    """Call ``condition`` until it returns True, at most ``timeout`` seconds.

    Exceptions listed in ``retry_on`` count as "not yet" and the last one is
    reported on timeout; any other exception propagates at once. ``abort`` is
    checked before every attempt; a non-None reason stops the wait early (for
    example: the server process has already exited).
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        if abort is not None:
            reason = abort()
            if reason is not None:
                raise ServiceStartError(f"{what}: {reason}")
        try:
            if condition():
                return
        except retry_on as exc:
            last_error = exc
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = f"; last error: {last_error}" if last_error is not None else ""
            raise ServiceStartError(f"{what}: not ready after {timeout:.0f}s{detail}")
        time.sleep(min(interval, remaining))
        interval = min(interval * 1.5, max_interval)
