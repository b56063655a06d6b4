"""Fault runs: each injects one fault under open-loop load, heals it, and verifies the topic.

Every test gates on the verifier (no loss, no phantom, no written rejection, duplicates only
after ambiguity, integrity, offsets) plus what its fault promises (for example: no 202 while
fewer than 2 replicas are in sync). Profiles: tests/fault/profiles.py.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from functools import partial

import pytest

from audit_ingest.adapters.key_admin import create_key, revoke_key
from tests.fault import profiles
from tests.fault.harness import Run, RunFault, acked, reps, within
from tests.fault.ledger import Attempt
from tests.fault.loadgen import KeyRef

PROFILE = profiles.current()
READ_MARGIN = 0.5  # seconds: see test_function_sigterm
STALL_S = 1.5  # seconds a drained request keeps its body half-sent (test_function_sigterm)
HANDLER_SLACK = 2.0  # seconds: key lookup, Redis round trips, answer transfer, client lag
pytestmark = [pytest.mark.fault, pytest.mark.timeout(PROFILE.test_timeout)]


# -- helpers -----------------------------------------------------------------------------
def wait_isr(run: Run, timeout: float = 60.0) -> None:
    run.stack.kafka.wait_healthy(timeout=timeout)


# -- broker faults -----------------------------------------------------------------------
@pytest.mark.parametrize("rep", reps("leader_kill"))
def test_leader_kill(run_fault: RunFault, rep: int) -> None:
    """F1: kill -9 the leader of partition 0, restart it later ("chase the leader")."""
    seconds = PROFILE.seconds("leader_kill")

    async def scenario(run: Run) -> None:
        await run.sleep_until(run.at(PROFILE.fault_at))
        kafka = run.stack.kafka
        for round_ in range(PROFILE.chase_rounds):
            leader = await run.blocking(lambda: kafka.partition_leader(run.topic, 0))
            run.notes.setdefault("killed", []).append(leader)
            run.mark(f"kill{round_}")
            await run.blocking(partial(kafka.kill, leader))
            await asyncio.sleep(seconds)
            run.mark(f"restart{round_}")
            await run.blocking(partial(kafka.start_nodes, [leader]))
            if round_ + 1 < PROFILE.chase_rounds:  # the next leader to chase: all in sync
                await run.blocking(lambda: wait_isr(run))
                run.mark(f"in_sync{round_}")

    result = run_fault("leader_kill", scenario)
    assert result.verdict.acked > 0


@pytest.mark.parametrize("rep", reps("broker_pause"))
def test_leader_paused(run_fault: RunFault, rep: int) -> None:
    """F3: SIGSTOP the leader of partition 0, SIGCONT it later; no 202 after the deadline."""
    seconds = PROFILE.seconds("broker_pause")

    async def scenario(run: Run) -> None:
        await run.sleep_until(run.at(PROFILE.fault_at))
        kafka = run.stack.kafka
        leader = await run.blocking(lambda: kafka.partition_leader(run.topic, 0))
        run.notes["paused"] = leader
        run.mark("pause")
        kafka.pause(leader)
        try:
            await asyncio.sleep(seconds)
        finally:
            kafka.resume(leader)
        run.mark("resume")

    result = run_fault("broker_pause", scenario)
    # The handler answers by KAFKA_DELIVERY_TIMEOUT_MS + 1 s once it started (server clock):
    # a 202 after that would mean a request the broker held for the whole pause.
    handler_deadline = PROFILE.delivery_timeout_ms / 1000 + 1.0
    acks = [a for a in result.run.ledger.attempts if acked(a) and a.handler_s is not None]
    slowest = max((a.handler_s or 0.0 for a in acks), default=0.0)
    result.run.notes["slowest_202_handler_s"] = slowest
    result.run.notes["slowest_202_client_s"] = round(result.verdict.max_ack_ms / 1000, 3)
    result.run.notes["producer_fatal_errors"] = result.run.functions.output().count("fatal error")
    late = [a for a in acks if (a.handler_s or 0.0) > handler_deadline + HANDLER_SLACK]
    assert not late, f"{len(late)} 202(s) later than the handler deadline ({handler_deadline}s)"


@pytest.mark.parametrize("rep", reps("two_brokers_down"))
def test_two_of_three_brokers_down(run_fault: RunFault, rep: int) -> None:
    """F4: 2 of 3 brokers down: no 202 at all while ISR < 2 (503s instead), then recovery."""
    seconds = PROFILE.seconds("two_brokers_down")

    async def scenario(run: Run) -> None:
        await run.sleep_until(run.at(PROFILE.fault_at))
        kafka = run.stack.kafka
        leader = await run.blocking(lambda: kafka.partition_leader(run.topic, 0))
        victims = [leader, next(n for n in kafka.node_ids if n != leader)]
        run.notes["killed"] = victims
        run.mark("kill")
        for node in victims:
            await run.blocking(partial(kafka.kill, node))
        run.mark("down")
        await asyncio.sleep(seconds)
        run.mark("restart")
        await run.blocking(lambda: kafka.start_nodes(victims))

    result = run_fault("two_brokers_down", scenario)
    marks = result.run.ledger.marks
    attempts = result.run.ledger.attempts
    during = [a for a in attempts if within(a, marks["down"], marks["restart"])]
    bad = [a for a in during if acked(a)]
    assert not bad, f"{len(bad)} 202(s) while only one replica was alive"
    sent_during = [a for a in attempts if marks["down"] <= a.sent <= marks["restart"]]
    assert any(a.status == 503 for a in sent_during), {a.status for a in sent_during}
    # The dead letters of the events refused meanwhile waited for the brokers (their own
    # producer has no delivery timeout): none was dropped. Each drop is a log line.
    result.run.notes["rejected_events"] = sum(1 for a in attempts if a.status == 400)
    assert "dead-letter record" not in result.run.functions.output()
    after = [a for a in attempts if a.sent > marks["healed"] and acked(a)]
    assert after, "no 202 after the brokers came back"


@pytest.mark.parametrize("rep", reps("all_brokers_down"))
def test_all_brokers_down(run_fault: RunFault, rep: int) -> None:
    """F9: every broker down, then back; no 202 meanwhile; every event accepted afterwards."""
    seconds = PROFILE.seconds("all_brokers_down")

    async def scenario(run: Run) -> None:
        await run.sleep_until(run.at(PROFILE.fault_at))
        kafka = run.stack.kafka
        run.mark("kill")
        await run.blocking(lambda: kafka.stop(graceful=False))
        run.mark("down")
        await asyncio.sleep(seconds)
        run.mark("restart")
        await run.blocking(lambda: kafka.start_nodes(kafka.node_ids))

    result = run_fault("all_brokers_down", scenario)
    marks = result.run.ledger.marks
    attempts = result.run.ledger.attempts
    during = [a for a in attempts if within(a, marks["down"], marks["restart"])]
    assert not [a for a in during if acked(a)], "a 202 while no broker was running"
    sent_during = [a for a in attempts if marks["down"] <= a.sent <= marks["restart"]]
    assert any(a.status == 503 for a in sent_during), {a.status for a in sent_during}


# -- the function process ----------------------------------------------------------------
@pytest.mark.parametrize("rep", reps("function_kill"))
def test_function_kill(run_fault: RunFault, rep: int) -> None:
    """F6: kill -9 the ingest_event function under load, restart it; retries close the gap."""

    async def scenario(run: Run) -> None:
        spacing = max(8.0, (PROFILE.load_seconds - PROFILE.fault_at) / (PROFILE.function_kills + 1))
        for index in range(PROFILE.function_kills):
            await run.sleep_until(run.at(PROFILE.fault_at + index * spacing))
            run.mark(f"kill{index}")
            await run.blocking(run.functions.kill_single)
            run.mark(f"killed{index}")
            await run.blocking(run.functions.restart_single)
            run.mark(f"restarted{index}")

    result = run_fault("function_kill", scenario)
    marks = result.run.ledger.marks
    # (signal sent, process gone): a request in flight at a kill overlaps that interval.
    kills = [(marks[f"kill{i}"], marks[f"killed{i}"]) for i in range(PROFILE.function_kills)]
    attempts = result.run.ledger.attempts

    def at_a_kill(a: Attempt) -> bool:
        return any(a.sent <= gone and a.done >= sent for sent, gone in kills)

    in_flight = [a for a in attempts if at_a_kill(a)]
    cut_off = [a for a in attempts if a.status is None and "Connect" not in a.error]
    result.run.notes["in_flight_at_kills"] = len(in_flight)
    result.run.notes["cut_off_requests"] = len(cut_off)
    strays = [a for a in cut_off if not at_a_kill(a)]
    assert not strays, f"{len(strays)} request(s) cut off that were not in flight at a kill"


@pytest.mark.parametrize("rep", reps("function_sigterm"))
def test_function_sigterm(run_fault: RunFault, rep: int) -> None:
    """F7: SIGTERM the ingest_event function under load: every in-flight request answered."""
    exit_codes: list[int] = []
    stalled: list[Attempt] = []

    async def scenario(run: Run) -> None:
        await run.sleep_until(run.at(PROFILE.fault_at))

        async def slow(key: KeyRef) -> None:
            item = run.gen.new_event(key, "single")
            stalled.append(await run.gen.send_event(key, item, stall=STALL_S))

        # Requests surely in progress at the signal: half their body is sent, the rest
        # follows STALL_S later, after the SIGTERM.
        probes = [asyncio.create_task(slow(key)) for key in run.keys[:3]]
        await asyncio.sleep(STALL_S / 3)
        run.mark("sigterm")
        exit_codes.append(await run.blocking(run.functions.terminate_single))
        run.mark("exited")
        await asyncio.gather(*probes)
        await run.blocking(run.functions.restart_single)
        run.mark("restarted")

    result = run_fault("function_sigterm", scenario)
    marks = result.run.ledger.marks
    assert exit_codes == [0], result.run.functions.output()[-3000:]
    assert "undelivered" not in result.run.functions.output()
    # The requests in progress at the signal were drained: answered (stored, acknowledged).
    assert [a.status for a in stalled] == [202, 202, 202], [(a.status, a.error) for a in stalled]
    assert all(a.sent < marks["sigterm"] < a.done for a in stalled)
    # Requests the server had time to read before the signal must all be answered. A request
    # still unread in a keep-alive connection when the signal lands is dropped by uvicorn's
    # shutdown (the client sees a reset: ambiguous, retried); READ_MARGIN is that window,
    # generous for a loaded 2-core machine. Those are counted, not failed.
    signalled = marks["sigterm"]
    singles = [a for a in result.run.ledger.attempts if a.kind == "single"]
    in_flight = [a for a in singles if a.sent < signalled < a.done]
    reset = [a for a in in_flight if a.status is None]
    result.run.notes["in_flight_at_sigterm"] = len(in_flight)
    result.run.notes["answered_after_sigterm"] = sum(1 for a in in_flight if a.status)
    result.run.notes["reset_unread_at_sigterm"] = len(reset)
    dropped = [a for a in reset if a.sent < signalled - READ_MARGIN]
    assert not dropped, [(round(a.sent - signalled, 3), a.error) for a in dropped][:5]


# -- dependencies ------------------------------------------------------------------------
@pytest.mark.parametrize("rep", reps("postgres_down"))
def test_postgres_down(run_fault: RunFault, rep: int) -> None:
    """D2: key store down: cached keys keep working; an uncached key gets 503, never 401."""
    seconds = PROFILE.seconds("postgres_down")
    probes: list[tuple[str, Attempt]] = []

    async def scenario(run: Run) -> None:
        issued = await run.blocking(
            lambda: create_key(
                run.database_url,
                tenant_id=uuid.uuid4(),
                name="uncached",
                scopes=("events:write",),
                rate_limit=1_000_000,
                expires_at=None,
            )
        )
        fresh = KeyRef("uncached", issued.secret, issued.stored.tenant_id)
        probe = run.gen.new_event(fresh, "single")  # one event, retried like a client would
        await run.sleep_until(run.at(PROFILE.fault_at))
        run.mark("stop")
        await run.blocking(run.stack.postgres.stop)
        run.mark("down")
        for _ in range(2):  # each waits for the pool's timeout (DATABASE_TIMEOUT_SECONDS)
            probes.append(("down", await run.gen.send_event(fresh, probe)))
            await asyncio.sleep(0.3)
        await run.sleep_until(run.ledger.marks["down"] + seconds)
        run.mark("restart")
        await run.blocking(run.stack.postgres.start)
        run.mark("up")
        for _ in range(40):  # bounded: the pool reconnects within a few seconds
            attempt = await run.gen.send_event(fresh, probe)
            probes.append(("up", attempt))
            if attempt.status == 202:
                break
            await asyncio.sleep(0.5)

    result = run_fault("postgres_down", scenario)
    marks = result.run.ledger.marks
    down = [a for phase, a in probes if phase == "down"]
    assert [a.status for a in down] == [503, 503], [(a.status, a.error) for a in down]
    assert [a.status for phase, a in probes if phase == "up"][-1] == 202
    during = [a for a in result.run.ledger.attempts if within(a, marks["down"], marks["restart"])]
    assert not [a for a in during if a.status in (401, 403)], "401/403 while the key store was down"
    cached = [a for a in during if a.key_label.startswith("k")]
    assert cached and all(a.status in (202, 400) for a in cached), sorted(
        {a.status for a in cached}, key=str
    )
    latencies = sorted(a.done - a.sent for a in cached)
    result.run.notes["cached_key_p99_s_during_outage"] = round(
        latencies[int(0.99 * (len(latencies) - 1))], 3
    )


@pytest.mark.parametrize("rep", reps("redis_down"))
def test_redis_down(run_fault: RunFault, rep: int) -> None:
    """D1: Redis killed: the rate limiter and idempotency fail open; not a single 5xx."""
    seconds = PROFILE.seconds("redis_down")

    async def scenario(run: Run) -> None:
        await run.sleep_until(run.at(PROFILE.fault_at))
        run.mark("kill")
        redis = run.stack.redis
        redis.signal(signal.SIGKILL)
        await run.blocking(redis.stop)
        run.mark("down")
        await asyncio.sleep(seconds)
        run.mark("restart")
        await run.blocking(redis.start)

    result = run_fault("redis_down", scenario)
    attempts = result.run.ledger.attempts
    server_errors = [a for a in attempts if a.status is None or a.status >= 500]
    assert not server_errors, sorted({(a.status, a.error[:60]) for a in server_errors}, key=str)
    assert result.verdict.ambiguous == 0


@pytest.mark.parametrize("rep", reps("redis_pause"))
def test_redis_paused(run_fault: RunFault, rep: int) -> None:
    """D1 (variant): Redis SIGSTOPped: requests wait at most the Redis timeout; no 5xx."""
    seconds = PROFILE.seconds("redis_pause")

    async def scenario(run: Run) -> None:
        await run.sleep_until(run.at(PROFILE.fault_at))
        run.mark("pause")
        run.stack.redis.signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            run.stack.redis.signal(signal.SIGCONT)
        run.mark("resume")

    result = run_fault("redis_pause", scenario)
    attempts = result.run.ledger.attempts
    unanswered = [a for a in attempts if a.status is None or a.status >= 500]
    # A socket the generator's own pool closed under a request (anyio's ClosedResourceError is
    # raised only for a stream this side closed: httpcore's keep-alive expiry race, loadgen.py)
    # got no verdict from the service at all; counted, not blamed on it.
    own_closes = [a for a in unanswered if a.status is None and "ClosedResourceError" in a.error]
    result.run.notes["closed_by_the_generator"] = len(own_closes)
    server_errors = [a for a in unanswered if a not in own_closes]
    assert not server_errors, sorted({(a.status, a.error[:80]) for a in server_errors}, key=str)


@pytest.mark.parametrize("rep", reps("key_revocation"))
def test_key_revocation(run_fault: RunFault, rep: int) -> None:
    """D3: a revoked key is refused (403) within KEY_CACHE_TTL_SECONDS, everywhere."""
    ttl = PROFILE.key_cache_ttl
    slack = 0.5  # request queueing and the revoke's own round trip

    async def scenario(run: Run) -> None:
        await run.sleep_until(run.at(PROFILE.fault_at))
        key_id = uuid.UUID(run.key_ids["k0"])
        await run.blocking(lambda: revoke_key(run.database_url, key_id))
        run.mark("revoked")
        await asyncio.sleep(ttl + 3.0)

    result = run_fault("key_revocation", scenario)
    revoked = result.run.ledger.marks["revoked"]
    k0 = [a for a in result.run.ledger.attempts if a.key_label == "k0"]
    late_acks = [a for a in k0 if acked(a) and a.sent > revoked + ttl + slack]
    assert not late_acks, f"{len(late_acks)} 202(s) for a key revoked {ttl}s (the TTL) earlier"
    refusals = sorted(a.done for a in k0 if a.status == 403)
    assert refusals, "the revoked key was never refused"
    first = refusals[0] - revoked
    result.run.notes["first_403_after_s"] = round(first, 3)
    assert first <= ttl + slack + 0.5, f"first 403 {first:.2f}s after revocation (TTL {ttl}s)"
    after = [a for a in k0 if a.sent > revoked + ttl + slack]
    assert after and all(a.status == 403 for a in after), sorted({a.status for a in after}, key=str)
