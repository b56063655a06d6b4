"""When and how long to retry, on top of tenacity.

Retried: 429, 502, 503 and 504 answers, and transport failures (connect errors, timeouts,
resets). Never retried: any other status, in particular 400, 401, 403, 413 and 415, which
would fail again. The wait before a retry is the server's `Retry-After` when it sent one, else
exponential backoff with full jitter (a uniform draw in [0, min(max_backoff,
initial_backoff * 2**n)]). Retries stop after `max_retries`, or before a wait would carry the
call past `deadline` seconds from its first attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import tenacity

from audit_ingest_sdk._errors import APIStatusError, TransportError

logger = logging.getLogger("audit_ingest_sdk")

# Statuses that mean "this exact request will fail again": never retried.
NEVER_RETRIED = frozenset({400, 401, 403, 404, 405, 413, 415})


@dataclass(frozen=True)
class RetryPolicy:
    """How a client retries a request that failed for a transient reason.

    `max_retries` retries at most (so `max_retries + 1` attempts); `deadline` bounds the whole
    call in seconds (attempts and waits). `retry_statuses` lists the answers worth retrying.
    """

    max_retries: int = 3
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    deadline: float = 60.0
    retry_statuses: frozenset[int] = frozenset({429, 502, 503, 504})

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ValueError("need 0 <= initial_backoff <= max_backoff")
        if self.deadline <= 0:
            raise ValueError("deadline must be positive")
        refused = sorted(self.retry_statuses & NEVER_RETRIED)
        if refused:
            raise ValueError(f"statuses {refused} fail the same way again: they are never retried")

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether a failed attempt with this exception is worth another."""
        if isinstance(exc, APIStatusError):
            return exc.status in self.retry_statuses
        if isinstance(exc, TransportError):
            return exc.retryable
        return False


class RetryAfterOrBackoff(tenacity.wait.wait_base):
    """tenacity wait: the failed attempt's `Retry-After` if any, else full-jitter backoff."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._backoff = tenacity.wait_random_exponential(
            multiplier=policy.initial_backoff, max=policy.max_backoff
        )

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, (int, float)):
            return float(retry_after)
        return float(self._backoff(retry_state))


def sync_retrying(
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None],
    retry_on_result: Callable[[Any], bool] | None = None,
) -> tenacity.Retrying:
    """A fresh tenacity `Retrying` for one call (it re-raises the last failure)."""
    return tenacity.Retrying(sleep=sleep, **_options(policy, retry_on_result))


def async_retrying(
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]],
    retry_on_result: Callable[[Any], bool] | None = None,
) -> tenacity.AsyncRetrying:
    """A fresh tenacity `AsyncRetrying` for one call (it re-raises the last failure)."""
    return tenacity.AsyncRetrying(sleep=sleep, **_options(policy, retry_on_result))


def _options(policy: RetryPolicy, retry_on_result: Callable[[Any], bool] | None) -> dict[str, Any]:
    retry: tenacity.retry_base = tenacity.retry_if_exception(policy.is_retryable)
    if retry_on_result is not None:
        retry = retry | tenacity.retry_if_result(retry_on_result)
    return {
        "stop": (
            tenacity.stop_after_attempt(policy.max_retries + 1)
            | tenacity.stop_before_delay(policy.deadline)
        ),
        "wait": RetryAfterOrBackoff(policy),
        "retry": retry,
        "before_sleep": _log_retry,
        # Out of retries: hand back the last outcome (its result, or raise its exception).
        "retry_error_callback": _last_outcome,
    }


def _last_outcome(retry_state: tenacity.RetryCallState) -> Any:
    assert retry_state.outcome is not None
    return retry_state.outcome.result()


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    outcome = retry_state.outcome
    reason = outcome.exception() if outcome is not None and outcome.failed else "partial batch"
    logger.info(
        "audit-ingest: attempt %d failed (%s); retrying in %.2f s",
        retry_state.attempt_number,
        reason,
        retry_state.upcoming_sleep,
    )
