"""The per-key rate limiter on Redis: one atomic round trip per request at most, fail-open.

A Lua script increments the key's counter for the current window and sets its expiry in one
call (INCRBY + EXPIRE, atomic on the server), so every replica shares one exact count. The
`limits` library offers the same fixed window, but reads the window's state in a second round
trip; this script returns the count it just made.

Hits share round trips, one in flight at a time: the hits that arrive while a round trip is
out (and those of the same loop turn) form the next batch, which goes out as one call when
that round trip is answered. Each key is incremented once by the number of its hits, and the
hits get the consecutive counts that increment produced, so counts stay exact. Several keys
go out as one pipeline of single-key scripts (each script touches one key: fine on Redis
Cluster). A hit waits at most one round trip more than it would alone. As one round trip is
out at a time, the client holds one connection (`single_connection_client`; redis-py gives a
pipeline, for several keys, one more from its pool): a pooled client checks out, probes and
returns a connection per command, 14 of the 55 µs of CPU a call costs here
(docs/benchmarks.md, round nine). A round trip that fails or times out fails the batch
waiting behind it too, without a round trip of its own: one timeout per failure, not one per
batch, and one trip of the breaker below (a batch whose leader was cancelled counts locally
without tripping it: nothing failed).

When Redis fails or is slow (`timeout`), the limiter fails open, as audit events must not be
dropped for want of a counter: it counts in a bounded in-process window instead (so one
replica still cannot exceed the key's limit), records a metric and logs at most every 10 s.
After a failure it stays on the local count for `retry_interval` seconds, so a dead Redis costs
one timeout per interval, not one per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from cachetools import LRUCache
from redis.asyncio import Redis
from redis.exceptions import RedisError

from audit_ingest.domain.ratelimit import RateDecision, decide, window_of
from audit_ingest.metrics import RATE_LIMIT_FAIL_OPEN, rate_limit_series

log = logging.getLogger(__name__)

# KEYS[1]: the window's counter. ARGV[1]: its ttl (s); ARGV[2]: the hits to add.
_SCRIPT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
if count == tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""
_TTL = str(2 * 60)  # outlives its window; the next window uses a new key
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
        # The batch open to new hits (key -> one future per hit), and the round trip in flight.
        self._open: dict[str, list[asyncio.Future[int]]] | None = None
        self._open_loop: asyncio.AbstractEventLoop | None = None
        self._turn = asyncio.Lock()

    def _client(self) -> Redis:
        if self._redis is None:
            self._redis = Redis.from_url(
                self._url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry_on_timeout=False,
                health_check_interval=0,
                single_connection_client=True,
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
            except _Unanswered:
                pass  # counted locally; a failure behind it tripped the breaker once, already
            except (RedisError, OSError) as exc:
                self._down_until = now + self._retry_interval
                self._log_failure(now, exc)
        if decision is None:
            RATE_LIMIT_FAIL_OPEN.inc()
            decision = decide(self._count_locally(key_id, window), limit, reset, degraded=True)
        rate_limit_series("allowed" if decision.allowed else "limited").inc()
        return decision

    async def _increment(self, key: str) -> int:
        """This hit's count in the window `key`, from a round trip shared with other hits.

        One round trip is in flight at a time. The hits that arrive meanwhile (and those of
        the same loop turn) wait together in the open batch; its first hit leads it: once
        the round trip before it is answered, it closes the batch and makes the one round
        trip for all of them. Under load the calls per second are bounded by the round trip
        time, not by the request rate.
        """
        loop = asyncio.get_running_loop()
        batch = self._open
        if batch is not None and self._open_loop is loop:
            joined: asyncio.Future[int] = loop.create_future()
            batch.setdefault(key, []).append(joined)
            return await joined
        own: asyncio.Future[int] = loop.create_future()
        batch = {key: [own]}
        self._open, self._open_loop = batch, loop
        try:
            if not self._turn.locked():
                await asyncio.sleep(0)  # nothing in flight: gather this loop turn's hits
            async with self._turn:
                if self._open is batch:
                    self._open = None  # later hits open the next batch
                if self._clock() < self._down_until:  # the round trip before failed
                    raise _Unanswered("an earlier round trip failed")
                totals = await self._increment_by([(k, len(hits)) for k, hits in batch.items()])
        except BaseException:
            if self._open is batch:
                self._open = None
            # Those who joined count locally; only the leader's own error trips the breaker.
            _fail(batch, own)
            raise
        for hits, total in zip(batch.values(), totals, strict=True):
            first = total - len(hits) + 1
            for offset, future in enumerate(hits):
                if not future.done():  # a request may be gone (its client disconnected)
                    future.set_result(first + offset)
        return own.result()

    async def _increment_by(self, increments: list[tuple[str, int]]) -> list[int]:
        client = self._client()
        if self._script_sha is None:
            self._script_sha = str(await client.script_load(_SCRIPT))
        try:
            return await self._run(client, "evalsha", self._script_sha, increments)
        except RedisError as exc:
            if "NOSCRIPT" not in str(exc):
                raise
            return await self._run(client, "eval", _SCRIPT, increments)

    @staticmethod
    async def _run(
        client: Redis, how: str, script: str, increments: list[tuple[str, int]]
    ) -> list[int]:
        if len(increments) == 1:
            ((key, hits),) = increments
            return [int(await getattr(client, how)(script, 1, key, _TTL, hits))]
        async with client.pipeline(transaction=False) as pipe:
            for key, hits in increments:
                getattr(pipe, how)(script, 1, key, _TTL, hits)
            return [int(count) for count in await pipe.execute()]

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


class _Unanswered(RedisError):
    """A hit's batch got no count from Redis: its round trip failed (its leader trips the
    breaker, once for the batch), the round trip before it had failed, or its leader was
    cancelled. The hit counts locally."""


def _fail(batch: dict[str, list[asyncio.Future[int]]], own: asyncio.Future[int]) -> None:
    """Leave every joined hit of `batch` unanswered (the leader raises its own error)."""
    unanswered = _Unanswered("the batch's round trip gave no count")
    for hits in batch.values():
        for future in hits:
            if future is not own and not future.done():
                future.set_exception(unanswered)
