"""The per-key rate limiter on Redis: one atomic round trip per request, fail-open.

A Lua script increments the key's counter for the current window and sets its expiry in one
call (INCR + EXPIRE, atomic on the server), so every replica shares one exact count. The
`limits` library offers the same fixed window, but reads the window's state in a second round
trip; this script returns the count it just made.

When Redis fails or is slow (`timeout`), the limiter fails open, as audit events must not be
dropped for want of a counter: it counts in a bounded in-process window instead (so one
replica still cannot exceed the key's limit), records a metric and logs at most every 10 s.
After a failure it stays on the local count for `retry_interval` seconds, so a dead Redis costs
one timeout per interval, not one per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from cachetools import LRUCache
from redis.asyncio import Redis
from redis.exceptions import RedisError

from audit_ingest.domain.ratelimit import RateDecision, decide, window_of
from audit_ingest.metrics import RATE_LIMIT_DECISIONS, RATE_LIMIT_FAIL_OPEN

log = logging.getLogger(__name__)

_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""
_KEY_PREFIX = "audit-ingest:rl:"


class RedisRateLimiter:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 0.1,
        retry_interval: float = 1.0,
        local_keys: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._clock = clock
        self._redis: Redis | None = None
        self._script_sha: str | None = None
        self._down_until = 0.0
        self._last_log = 0.0
        self._local: LRUCache[str, tuple[int, int]] = LRUCache(maxsize=local_keys)

    def _client(self) -> Redis:
        if self._redis is None:
            self._redis = Redis.from_url(
                self._url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry_on_timeout=False,
                health_check_interval=0,
            )
        return self._redis

    async def hit(self, key_id: str, limit: int) -> RateDecision:
        """Count one request for `key_id` and decide it against `limit` per window."""
        now = self._clock()
        window, reset = window_of(now)
        decision: RateDecision | None = None
        if now >= self._down_until:
            try:
                count = await self._increment(f"{_KEY_PREFIX}{key_id}:{window}")
                decision = decide(count, limit, reset)
            except (RedisError, OSError) as exc:
                self._down_until = now + self._retry_interval
                self._log_failure(now, exc)
        if decision is None:
            RATE_LIMIT_FAIL_OPEN.inc()
            decision = decide(self._count_locally(key_id, window), limit, reset, degraded=True)
        RATE_LIMIT_DECISIONS.labels("allowed" if decision.allowed else "limited").inc()
        return decision

    async def _increment(self, key: str) -> int:
        client = self._client()
        ttl = str(2 * 60)  # outlives its window; the next window uses a new key
        if self._script_sha is None:
            self._script_sha = str(await client.script_load(_SCRIPT))
        try:
            result = await client.evalsha(self._script_sha, 1, key, ttl)  # type: ignore[misc]
        except RedisError as exc:
            if "NOSCRIPT" not in str(exc):
                raise
            result = await client.eval(_SCRIPT, 1, key, ttl)  # type: ignore[misc]
        return int(result)

    def _count_locally(self, key_id: str, window: int) -> int:
        seen_window, count = self._local.get(key_id, (window, 0))
        count = count + 1 if seen_window == window else 1
        self._local[key_id] = (window, count)
        return count

    def _log_failure(self, now: float, exc: BaseException) -> None:
        if now - self._last_log >= 10:
            self._last_log = now
            log.warning(
                "rate limiter: Redis unavailable (%s); failing open to a local count",
                type(exc).__name__,
            )

    async def ping(self) -> bool:
        try:
            return bool(await self._client().ping())  # type: ignore[misc]
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
