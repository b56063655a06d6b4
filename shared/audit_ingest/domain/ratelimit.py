"""Rate-limit decisions and the headers that report them (pure).

The algorithm is a fixed window of `WINDOW_SECONDS` per API key, as APISIX's `limit-count`
counts in gateway mode. One difference: our windows are aligned to the minute (a key's window
resets at the same instant on every replica), while limit-count starts a key's window at its
first request; either way a key gets `rate_limit` requests per window, and a client that
bursts across a boundary can get up to twice that in a short span (documented).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WINDOW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the current window ends (at least 1)
    degraded: bool = False  # counted locally because the shared store failed


def window_of(now: float) -> tuple[int, int]:
    """(window number, whole seconds until it ends) for a Unix time."""
    window = int(now // WINDOW_SECONDS)
    reset = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
    return window, reset


def decide(count: int, limit: int, reset_seconds: int, *, degraded: bool = False) -> RateDecision:
    """The decision for the `count`-th request of a window with `limit` allowed."""
    return RateDecision(
        allowed=count <= limit,
        limit=limit,
        remaining=max(0, limit - count),
        reset_seconds=reset_seconds,
        degraded=degraded,
    )


def rate_headers(decision: RateDecision) -> dict[str, str]:
    """`X-RateLimit-*`, as APISIX's limit-count writes them (Reset: seconds until reset)."""
    return {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(decision.reset_seconds),
    }
