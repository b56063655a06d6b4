"""The Redis rate limiter against a real Redis: exact counts, windows, sharing, failing open."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devstack.ports import free_ports
from devstack.redis_server import RedisService

from audit_ingest.adapters.redis_limiter import RedisRateLimiter
from audit_ingest.metrics import RATE_LIMIT_FAIL_OPEN
from audit_ingest.settings import Settings

pytestmark = pytest.mark.integration


def redis_url(settings_env: dict[str, str]) -> str:
    return settings_env["REDIS_URL"]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_exact_count_at_the_boundary(stack_env: dict[str, str]) -> None:
    limiter = RedisRateLimiter(redis_url(stack_env), clock=Clock(6000.0))
    key = str(uuid.uuid4())
    try:
        decisions = [await limiter.hit(key, 5) for _ in range(7)]
    finally:
        await limiter.close()
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0, 0]
    assert not any(d.degraded for d in decisions)
    assert decisions[0].reset_seconds == 60


async def test_window_reset(stack_env: dict[str, str]) -> None:
    clock = Clock(6059.5)
    limiter = RedisRateLimiter(redis_url(stack_env), clock=clock)
    key = str(uuid.uuid4())
    try:
        assert (await limiter.hit(key, 1)).allowed
        limited = await limiter.hit(key, 1)
        assert not limited.allowed and limited.reset_seconds == 1
        clock.now = 6060.0  # the next window
        assert (await limiter.hit(key, 1)).allowed
    finally:
        await limiter.close()


async def test_concurrent_hits_are_counted_exactly(stack_env: dict[str, str]) -> None:
    limiter = RedisRateLimiter(redis_url(stack_env), timeout=1.0)
    key = str(uuid.uuid4())
    try:
        decisions = await asyncio.gather(*(limiter.hit(key, 50) for _ in range(80)))
    finally:
        await limiter.close()
    assert sum(d.allowed for d in decisions) == 50


async def test_hits_of_one_turn_share_a_round_trip_and_stay_exact(
    stack_env: dict[str, str],
) -> None:
    # Concurrent hits on three keys: one pipelined round trip, each key counted exactly.
    limiter = RedisRateLimiter(redis_url(stack_env), timeout=1.0)
    keys = [str(uuid.uuid4()) for _ in range(3)]
    try:
        decisions = await asyncio.gather(*(limiter.hit(k, 10) for k in keys * 12))
        later = await limiter.hit(keys[0], 10)
    finally:
        await limiter.close()
    for index, key in enumerate(keys):
        mine = decisions[index :: len(keys)]
        assert sum(d.allowed for d in mine) == 10, key
        assert sorted(d.remaining for d in mine) == [0, 0, 0, *range(1, 10)]
    assert not later.allowed and not later.degraded


class CountingLimiter(RedisRateLimiter):
    """The real limiter, its round trips counted (how many, how many at once)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def _increment_by(self, increments: list[tuple[str, int]]) -> list[int]:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await super()._increment_by(increments)
        finally:
            self.in_flight -= 1


async def _staggered_hits(limiter: RedisRateLimiter, keys: list[str], limit: int) -> list[Any]:
    """One hit per loop turn on each key in turn, for as many turns as there are keys."""

    async def hit_after(turns: int, key: str) -> Any:
        for _ in range(turns):
            await asyncio.sleep(0)
        return await limiter.hit(key, limit)

    return await asyncio.gather(*(hit_after(turn, key) for turn, key in enumerate(keys)))


async def test_one_round_trip_at_a_time_and_the_hits_meanwhile_share_the_next(
    stack_env: dict[str, str],
) -> None:
    # 300 hits, one per loop turn, on 3 keys: a round trip takes many turns, so the hits of
    # those turns go together in the next one, and only one is ever out.
    limiter = CountingLimiter(redis_url(stack_env), timeout=1.0)
    keys = [str(uuid.uuid4()) for _ in range(3)]
    try:
        decisions = await _staggered_hits(limiter, keys * 100, 40)
    finally:
        await limiter.close()
    assert limiter.most_in_flight == 1
    assert limiter.calls < 100, limiter.calls  # one per turn would be 300
    for index, key in enumerate(keys):
        mine = decisions[index :: len(keys)]
        assert not any(d.degraded for d in mine)
        assert sum(d.allowed for d in mine) == 40, key  # still exact
        assert sorted(d.remaining for d in mine)[-40:] == sorted(range(40)), key


async def test_a_cancelled_leader_leaves_its_batch_local_without_tripping_the_breaker(
    stack_env: dict[str, str],
) -> None:
    # The first hit of a turn leads its batch; cancelled while it gathers, its joiners count
    # locally, and Redis, which never failed, is asked again by the next hit.
    limiter = RedisRateLimiter(redis_url(stack_env), timeout=1.0, retry_interval=30.0)
    key = str(uuid.uuid4())
    try:
        leader = asyncio.create_task(limiter.hit(key, 100))
        joiners = [asyncio.create_task(limiter.hit(key, 100)) for _ in range(5)]
        await asyncio.sleep(0)  # the leader waits for its turn's hits; the joiners joined
        leader.cancel()
        decisions = await asyncio.gather(*joiners)
        later = await limiter.hit(key, 100)
    finally:
        await limiter.close()
    assert leader.cancelled()
    assert all(d.degraded and d.allowed for d in decisions)
    assert not later.degraded


HIT_SCRIPT = """
import asyncio, sys
from audit_ingest.adapters.redis_limiter import RedisRateLimiter
async def main():
    limiter = RedisRateLimiter(sys.argv[1], timeout=1.0)
    allowed = sum([(await limiter.hit(sys.argv[2], 30)).allowed for _ in range(20)])
    await limiter.close()
    print(allowed)
asyncio.run(main())
"""


def test_two_processes_share_one_count(stack_env: dict[str, str]) -> None:
    key = str(uuid.uuid4())
    url = redis_url(stack_env)
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", HIT_SCRIPT, url, key], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    allowed = [int(run.communicate(timeout=60)[0]) for run in runs]
    assert sum(allowed) == 30  # 40 hits, limit 30, whichever process made them


@pytest.fixture
def private_redis() -> Iterator[RedisService]:
    root = Path(tempfile.mkdtemp(prefix="audit-ingest-redis-"))
    (port,) = free_ports(1)
    saved = os.environ.pop("REDIS_URL", None)  # this test needs its own server to stop
    service = RedisService(root, port)
    try:
        service.start()
        yield service
    finally:
        if saved is not None:
            os.environ["REDIS_URL"] = saved
        service.stop()


async def test_fails_open_when_redis_dies_and_recovers(private_redis: RedisService) -> None:
    limiter = RedisRateLimiter(private_redis.url, timeout=0.1, retry_interval=0.5)
    key = str(uuid.uuid4())
    before = RATE_LIMIT_FAIL_OPEN._value.get()
    try:
        assert not (await limiter.hit(key, 3)).degraded
        private_redis.stop()
        started = time.monotonic()
        decisions = [await limiter.hit(key, 3) for _ in range(5)]
        elapsed = time.monotonic() - started
        assert all(d.degraded for d in decisions)
        # Still bounded per process while degraded: the local window allows the key's limit.
        assert [d.allowed for d in decisions] == [True, True, True, False, False]
        assert elapsed < 1.0  # one short timeout at most, then the local count
        assert RATE_LIMIT_FAIL_OPEN._value.get() - before == 5
        private_redis.start()
        await asyncio.sleep(0.6)  # past the retry interval
        assert not (await limiter.hit(key, 3)).degraded
    finally:
        await limiter.close()


async def test_a_failed_shared_round_trip_fails_every_hit_open(
    private_redis: RedisService,
) -> None:
    limiter = RedisRateLimiter(private_redis.url, timeout=0.1, retry_interval=5.0)
    key = str(uuid.uuid4())
    try:
        assert not (await limiter.hit(key, 100)).degraded
        private_redis.stop()
        decisions = await asyncio.gather(*(limiter.hit(key, 100) for _ in range(10)))
    finally:
        await limiter.close()
    assert all(d.degraded and d.allowed for d in decisions)


async def test_a_stalled_redis_costs_at_most_the_timeout(private_redis: RedisService) -> None:
    limiter = RedisRateLimiter(private_redis.url, timeout=0.1, retry_interval=5.0)
    key = str(uuid.uuid4())
    assert not (await limiter.hit(key, 100)).degraded
    assert private_redis.process is not None
    os.kill(private_redis.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        first = await limiter.hit(key, 100)
        first_cost = time.monotonic() - started
        started = time.monotonic()
        for _ in range(20):
            await limiter.hit(key, 100)
        rest_cost = time.monotonic() - started
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
        await limiter.close()
    assert first.degraded and first.allowed
    assert first_cost < 0.5
    assert rest_cost < 0.1  # no timeout paid again within the retry interval


async def test_the_limiter_holds_at_most_two_connections(private_redis: RedisService) -> None:
    # One round trip at a time needs one connection (redis-py takes a pipeline's, for several
    # keys, from its pool: a second one); a pool per call opened one per overlapping round
    # trip (the previous limiter: 21 in this test).
    from redis.asyncio import Redis

    limiter = RedisRateLimiter(private_redis.url, timeout=1.0)
    observer = Redis.from_url(private_redis.url)
    try:
        await _staggered_hits(limiter, [str(uuid.uuid4()) for _ in range(3)] * 50, 100)
        clients = await observer.client_list()
    finally:
        await limiter.close()
        await observer.aclose()
    assert len(clients) <= 3, clients  # the limiter's two and the observer's


async def test_hits_queued_behind_a_stalled_round_trip_cost_one_timeout(
    private_redis: RedisService,
) -> None:
    # Redis stops answering while hits keep arriving (one every 2 ms for 0.3 s): those that
    # wait behind the round trip in flight count locally once it times out, without a round
    # trip (and a timeout) of their own; the later ones count locally from the start.
    limiter = CountingLimiter(private_redis.url, timeout=0.1, retry_interval=5.0)
    key = str(uuid.uuid4())
    assert not (await limiter.hit(key, 1000)).degraded
    limiter.calls = 0
    assert private_redis.process is not None
    os.kill(private_redis.process.pid, signal.SIGSTOP)

    async def timed_hit(delay: float) -> tuple[Any, float]:
        await asyncio.sleep(delay)
        started = time.monotonic()
        decision = await limiter.hit(key, 1000)
        return decision, time.monotonic() - started

    try:
        results = await asyncio.gather(*(timed_hit(i * 0.002) for i in range(150)))
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
        await limiter.close()
    assert all(decision.degraded and decision.allowed for decision, _ in results)
    assert limiter.calls == 1  # the stalled one; those behind it did not try again
    slowest = max(waited for _, waited in results)
    assert slowest < 0.19, slowest  # one 0.1 s timeout (and a loop turn), not two


def test_settings_default_timeout_is_short() -> None:
    assert Settings().redis_timeout_seconds <= 0.1
