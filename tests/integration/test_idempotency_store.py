"""The idempotency store's scripts against a real Redis."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from devstack.ports import free_ports

from audit_ingest.adapters.redis_idempotency import (
    MAX_KEYS_PER_CALL,
    IdempotencyUnavailable,
    RedisIdempotencyStore,
)
from audit_ingest.domain.idempotency import RETENTION_SECONDS, Claim, storage_key

pytestmark = pytest.mark.integration


def claim(key: str, event_id: str, fp: str = "fp1") -> Claim:
    return Claim(key, event_id, fp)


async def test_claim_done_retry_cycle(stack_env: dict[str, str]) -> None:
    store = RedisIdempotencyStore(stack_env["REDIS_URL"], timeout=1.0)
    tenant = str(uuid.uuid4())
    try:
        (first,) = await store.claim(tenant, [claim("k", "e1")])
        assert (first.status, first.event_id) == ("claimed", "e1")
        (busy,) = await store.claim(tenant, [claim("k", "e2")])
        assert (busy.status, busy.event_id) == ("pending", "e1")
        await store.settle(tenant, [], [claim("k", "e1")])  # the attempt failed
        (again,) = await store.claim(tenant, [claim("k", "e3")])
        assert (again.status, again.event_id) == ("claimed", "e1")  # same id on retry
        await store.settle(tenant, [(claim("k", "e1"), "2024-12-05T10:00:00.000Z")], [])
        (done,) = await store.claim(tenant, [claim("k", "e4")])
        assert (done.status, done.event_id, done.received_at) == (
            "done",
            "e1",
            "2024-12-05T10:00:00.000Z",
        )
        # Another tenant, same key: independent.
        (other,) = await store.claim(str(uuid.uuid4()), [claim("k", "e5")])
        assert other.status == "claimed" and other.event_id == "e5"
    finally:
        await store.close()


async def test_a_claim_past_its_deadline_is_taken_over_under_its_event_id(
    stack_env: dict[str, str],
) -> None:
    """A process killed after producing leaves its claim pending. Past the claim's deadline a
    retry of the same content takes it over under the SAME event_id (a copy it writes shares
    the first one's id); the key itself lives on for the retention, not the pending time."""
    store = RedisIdempotencyStore(stack_env["REDIS_URL"], timeout=1.0, pending_ttl=0.2)
    tenant = str(uuid.uuid4())
    try:
        await store.claim(tenant, [claim("k", "e1")])
        (busy,) = await store.claim(tenant, [claim("k", "e2")])
        assert (busy.status, busy.event_id) == ("pending", "e1")  # before the deadline
        await asyncio.sleep(0.3)  # e1's owner died: its claim is past its deadline
        assert await store.lookup(tenant, "k") is None  # the next attempt proceeds
        redis = store._client()
        ttl = await redis.ttl(storage_key(tenant, "k"))
        assert RETENTION_SECONDS - 5 <= ttl <= RETENTION_SECONDS  # kept, not expired
        (taken,) = await store.claim(tenant, [claim("k", "e3")])
        assert (taken.status, taken.event_id) == ("claimed", "e1")
        (busy,) = await store.claim(tenant, [claim("k", "e4")])
        assert (busy.status, busy.event_id) == ("pending", "e1")  # a fresh deadline
        # The dead owner's late report and the new owner's settle the same event: either is
        # right, and the one that lands first stands.
        await store.settle(tenant, [(claim("k", "e1"), "late")], [])
        (done,) = await store.claim(tenant, [claim("k", "e5")])
        assert (done.status, done.event_id, done.received_at) == ("done", "e1", "late")
    finally:
        await store.close()


async def test_a_stale_settlement_does_not_overwrite_a_newer_claim(
    stack_env: dict[str, str],
) -> None:
    """Past the deadline, the key reused for DIFFERENT content gets a new event_id (sharing
    one would give two events one id), and the dead owner's late report leaves it alone."""
    store = RedisIdempotencyStore(stack_env["REDIS_URL"], timeout=1.0, pending_ttl=0.2)
    tenant = str(uuid.uuid4())
    try:
        await store.claim(tenant, [claim("k", "e1")])
        await asyncio.sleep(0.3)  # e1's owner died: its claim is past its deadline
        (taken,) = await store.claim(tenant, [claim("k", "e2", fp="fp2")])
        assert taken.status == "claimed" and taken.event_id == "e2"
        await store.settle(tenant, [(claim("k", "e1"), "late")], [])  # the dead owner's
        (state,) = await store.claim(tenant, [claim("k", "e3", fp="fp2")])
        assert (state.status, state.event_id) == ("pending", "e2")
    finally:
        await store.close()


async def test_a_pending_value_of_the_previous_release_expires_by_its_ttl(
    stack_env: dict[str, str],
) -> None:
    """During a rolling update, a claim written by the previous release (`pending|id|fp`, no
    deadline, a key TTL) is honoured as pending until that TTL ends, then claimed afresh."""
    store = RedisIdempotencyStore(stack_env["REDIS_URL"], timeout=1.0, pending_ttl=0.2)
    tenant = str(uuid.uuid4())
    try:
        await store._client().set(storage_key(tenant, "k"), "pending|old1|fp1", px=400)
        (busy,) = await store.claim(tenant, [claim("k", "e1")])
        assert (busy.status, busy.event_id) == ("pending", "old1")
        looked = await store.lookup(tenant, "k")
        assert looked is not None and (looked.status, looked.event_id) == ("pending", "old1")
        await asyncio.sleep(0.5)
        (taken,) = await store.claim(tenant, [claim("k", "e2")])
        assert (taken.status, taken.event_id) == ("claimed", "e2")
    finally:
        await store.close()


async def test_a_held_claim_stays_pending_past_its_ttl_then_settles(
    stack_env: dict[str, str],
) -> None:
    store = RedisIdempotencyStore(
        stack_env["REDIS_URL"], timeout=1.0, pending_ttl=0.3, held_ttl=5.0
    )
    tenant = str(uuid.uuid4())
    try:
        await store.claim(tenant, [claim("held", "e1"), claim("free", "f1")])
        # Both requests gave up; "held"'s record is still with the producer, "free" failed.
        await store.settle(tenant, [], [claim("free", "f1")], [claim("held", "e1")])
        await asyncio.sleep(0.5)  # past the pending TTL: a held claim must not expire yet
        held, free = await store.claim(tenant, [claim("held", "e2"), claim("free", "f2")])
        assert (held.status, held.event_id) == ("pending", "e1")
        assert (free.status, free.event_id) == ("claimed", "f1")
        # The producer's late report lands: the retry gets the stored event's id.
        await store.settle(tenant, [(claim("held", "e1"), "2024-12-05T10:00:00.000Z")], [])
        (done,) = await store.claim(tenant, [claim("held", "e3")])
        assert (done.status, done.event_id) == ("done", "e1")
        # Holding a claim that is no longer pending (settled, or taken over) changes nothing.
        await store.settle(tenant, [], [], [claim("held", "e1")])
        (still,) = await store.claim(tenant, [claim("held", "e4")])
        assert (still.status, still.event_id) == ("done", "e1")
    finally:
        await store.close()


async def test_a_held_claim_past_its_hold_is_taken_over_under_its_event_id(
    stack_env: dict[str, str],
) -> None:
    """A hold moves the claim's deadline; a process killed while holding leaves it to pass,
    and the retry then takes the key over under the held claim's event_id."""
    store = RedisIdempotencyStore(
        stack_env["REDIS_URL"], timeout=1.0, pending_ttl=0.2, held_ttl=0.8
    )
    tenant = str(uuid.uuid4())
    try:
        await store.claim(tenant, [claim("held", "e1")])
        await store.settle(tenant, [], [], [claim("held", "e1")])
        await asyncio.sleep(0.4)  # past the pending time, inside the hold
        (busy,) = await store.claim(tenant, [claim("held", "e2")])
        assert (busy.status, busy.event_id) == ("pending", "e1")
        await asyncio.sleep(0.6)  # past the hold: its owner is taken for dead
        (taken,) = await store.claim(tenant, [claim("held", "e3")])
        assert (taken.status, taken.event_id) == ("claimed", "e1")
    finally:
        await store.close()


async def test_owners_of_a_key_come_one_at_a_time_and_share_one_event_id(
    stack_env: dict[str, str],
) -> None:
    """A property at load: 40 workers claim 300 keys of one content for 3 s, and each owner
    then settles done, fails, holds, or dies (settles nothing). Whatever the interleaving:

    - every owner of a key writes under the key's first event_id (a dead owner's successor
      too), and a stored key answers that id;
    - a key has one live owner at a time: it is claimed again only after its owner failed,
      or after the owner's deadline (pending time, or the hold) has passed;
    - nothing is claimed once it is stored.
    """
    pending_s, held_s, slack_s = 0.15, 0.3, 0.02  # slack: the client's clock against Redis's
    store = RedisIdempotencyStore(
        stack_env["REDIS_URL"], timeout=2.0, pending_ttl=pending_s, held_ttl=held_s
    )
    tenant = str(uuid.uuid4())
    keys = [f"k{i}" for i in range(300)]
    rng = random.Random(20261201)
    first_id: dict[str, str] = {}
    # key -> (claimed at, frees at: None while it may still settle, or when its deadline ends)
    owner: dict[str, tuple[float, float | None]] = {}
    stored: set[str] = set()
    dead: set[str] = set()  # keys whose last owner died
    violations: list[str] = []
    claims = takeovers = 0

    async def worker() -> None:
        nonlocal claims, takeovers
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.0
        while loop.time() < end:
            key = rng.choice(keys)
            sent = loop.time()
            (state,) = await store.claim(tenant, [claim(key, str(uuid.uuid4()))])
            answered = loop.time()
            if state.status == "done":
                if state.event_id != first_id.get(key):
                    violations.append(f"{key}: stored as {state.event_id}")
                continue
            if state.status == "pending":
                continue
            claims += 1
            expected = first_id.setdefault(key, state.event_id)
            if state.event_id != expected:
                violations.append(f"{key}: claimed as {state.event_id}, first {expected}")
            if key in stored:
                violations.append(f"{key}: claimed after it was stored")
            previous = owner.get(key)
            takeovers += key in dead
            dead.discard(key)
            if previous is not None:
                frees = previous[1] if previous[1] is not None else previous[0] + pending_s
                if answered < frees - slack_s:
                    violations.append(f"{key}: claimed {frees - answered:.3f} s early")
            owner[key] = (sent, None)
            fate = rng.random()
            if fate < 0.3:
                await store.settle(tenant, [(claim(key, state.event_id), "t")], [])
                stored.add(key)
            elif fate < 0.6:
                owner[key] = (sent, 0.0)  # failed: free at once
                await store.settle(tenant, [], [claim(key, state.event_id)])
            elif fate < 0.7:
                holding = loop.time()  # the hold's deadline is set after this
                await store.settle(tenant, [], [], [claim(key, state.event_id)])
                owner[key] = (sent, holding + held_s)
            else:
                owner[key] = (sent, sent + pending_s)  # died: its deadline frees the key
                dead.add(key)
            await asyncio.sleep(0)

    try:
        await asyncio.gather(*(worker() for _ in range(40)))
    finally:
        await store.close()
    assert violations == []
    # Enough of each to mean something: three runs here made 944-1,091 claims, 258-331 of them
    # takeovers from a dead owner, and stored all 300 keys. The run is bounded in time, so
    # these are floors well below that.
    counts = (claims, takeovers, len(stored))
    assert counts[0] >= 300 and counts[1] >= 60 and counts[2] >= 50, counts


async def test_concurrent_claims_have_one_winner(stack_env: dict[str, str]) -> None:
    stores = [RedisIdempotencyStore(stack_env["REDIS_URL"], timeout=1.0) for _ in range(10)]
    tenant = str(uuid.uuid4())
    try:
        results = await asyncio.gather(
            *(store.claim(tenant, [claim("k", f"e{i}")]) for i, store in enumerate(stores))
        )
    finally:
        for store in stores:
            await store.close()
    states = [state for (state,) in results]
    assert sum(state.status == "claimed" for state in states) == 1
    assert len({state.event_id for state in states}) == 1


async def test_a_batch_is_one_call_with_mixed_states(stack_env: dict[str, str]) -> None:
    store = RedisIdempotencyStore(stack_env["REDIS_URL"], timeout=1.0)
    tenant = str(uuid.uuid4())
    try:
        await store.claim(tenant, [claim("a", "ea")])
        await store.settle(tenant, [(claim("a", "ea"), "t0")], [])
        states = await store.claim(
            tenant, [claim(k, f"new-{k}") for k in "abc"] + [claim("a", "x", fp="other")]
        )
        assert [(s.status, s.event_id) for s in states] == [
            ("done", "ea"),
            ("claimed", "new-b"),
            ("claimed", "new-c"),
            ("done", "ea"),
        ]
        assert states[3].fingerprint == "fp1"  # the service compares it: a reused key
    finally:
        await store.close()


async def test_a_full_call_of_every_state_and_settlement(stack_env: dict[str, str]) -> None:
    """MAX_KEYS_PER_CALL keys in one claim call, each key's values in their own place: in turn
    a key stored (done), one whose attempt failed (claimed again under its old event_id), one
    pending, and a new one. The keys this call claimed are then settled in one call,
    alternately done and held (held: an empty new value, which extends the pending one)."""
    store = CountingStore(stack_env["REDIS_URL"], timeout=2.0, pending_ttl=5.0, held_ttl=9.0)
    tenant = str(uuid.uuid4())
    n = MAX_KEYS_PER_CALL
    kinds = ["done", "retry", "pending", "new"]
    try:
        earlier = [claim(f"k{i}", f"old{i}", fp=f"fp{i}") for i in range(n) if i % 4 != 3]
        await store.claim(tenant, earlier)
        await store.settle(
            tenant,
            [(c, f"t{c.key}") for c in earlier if kinds[int(c.key[1:]) % 4] == "done"],
            [c for c in earlier if kinds[int(c.key[1:]) % 4] == "retry"],
        )
        store.calls = 0
        states = await store.claim(
            tenant, [claim(f"k{i}", f"new{i}", fp=f"fp{i}") for i in range(n)]
        )
        assert store.calls == 1
        expected: dict[str, Callable[[int], tuple[str, str, str | None]]] = {
            "done": lambda i: ("done", f"old{i}", f"tk{i}"),
            "retry": lambda i: ("claimed", f"old{i}", None),
            "pending": lambda i: ("pending", f"old{i}", None),
            "new": lambda i: ("claimed", f"new{i}", None),
        }
        assert [(s.status, s.event_id, s.received_at) for s in states] == [
            expected[kinds[i % 4]](i) for i in range(n)
        ]
        assert [s.fingerprint for s in states] == [f"fp{i}" for i in range(n)]
        # Settle the ones this call claimed: alternately done and held (empty new value).
        mine = [
            claim(f"k{i}", state.event_id, fp=f"fp{i}")
            for i, state in enumerate(states)
            if state.status == "claimed"
        ]
        store.calls = 0
        await store.settle(tenant, [(c, "t-late") for c in mine[::2]], [], held=mine[1::2])
        assert store.calls == 1
        looked = [await store.lookup(tenant, c.key) for c in mine]
        assert [(s.status, s.event_id) if s else None for s in looked] == [
            ("done" if j % 2 == 0 else "pending", c.event_id) for j, c in enumerate(mine)
        ]
    finally:
        await store.close()


async def test_a_value_with_a_newline_refuses_the_whole_call(stack_env: dict[str, str]) -> None:
    """Values travel '\n'-ended in one argument: one that holds a '\n' must not shift the
    others onto the wrong keys. The script refuses the call and writes nothing."""
    store = RedisIdempotencyStore(stack_env["REDIS_URL"], timeout=1.0)
    reader = RedisIdempotencyStore(stack_env["REDIS_URL"], timeout=1.0)
    tenant = str(uuid.uuid4())
    try:
        with pytest.raises(IdempotencyUnavailable) as raised:
            await store.claim(tenant, [claim("a", "ea"), claim("b", "e\nb"), claim("c", "ec")])
        assert "7 values for 3 keys" in str(raised.value.__cause__)
        assert [await reader.lookup(tenant, k) for k in "abc"] == [None, None, None]
    finally:
        await store.close()
        await reader.close()


async def test_unreachable_redis_is_unavailable() -> None:
    (port,) = free_ports(1)
    store = RedisIdempotencyStore(f"redis://127.0.0.1:{port}/0", timeout=0.1)
    try:
        with pytest.raises(IdempotencyUnavailable):
            await store.claim("t", [claim("k", "e")])
    finally:
        await store.close()


async def test_after_a_failure_the_store_is_skipped_for_the_retry_interval() -> None:
    import time

    (port,) = free_ports(1)
    store = RedisIdempotencyStore(f"redis://127.0.0.1:{port}/0", timeout=0.1, retry_interval=5.0)
    try:
        with pytest.raises(IdempotencyUnavailable):
            await store.claim("t", [claim("k", "e")])
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(IdempotencyUnavailable, match="moments ago"):
                await store.claim("t", [claim("k", "e")])
        assert time.monotonic() - started < 0.05  # no connection attempted
    finally:
        await store.close()


async def test_lookup_reads_what_claims_and_settlements_wrote(stack_env: dict[str, str]) -> None:
    """The store's read method: callers (the DLQ dry run) never parse its values."""
    store = RedisIdempotencyStore(stack_env["REDIS_URL"], timeout=1.0)
    tenant = str(uuid.uuid4())
    try:
        assert await store.lookup(tenant, "k") is None
        await store.claim(tenant, [claim("k", "e1")])
        pending = await store.lookup(tenant, "k")
        assert pending is not None and (pending.status, pending.event_id) == ("pending", "e1")
        await store.settle(tenant, [], [claim("k", "e1")])
        assert await store.lookup(tenant, "k") is None  # a failed attempt: nothing stored
        await store.claim(tenant, [claim("k", "e2")])
        await store.settle(tenant, [(claim("k", "e1"), "2024-12-05T10:00:00.000Z")], [])
        done = await store.lookup(tenant, "k")
        assert done is not None
        assert (done.status, done.event_id, done.fingerprint, done.received_at) == (
            "done",
            "e1",
            "fp1",
            "2024-12-05T10:00:00.000Z",
        )
        assert await store.lookup(str(uuid.uuid4()), "k") is None  # scoped to the tenant
    finally:
        await store.close()


class CountingStore(RedisIdempotencyStore):
    """The real store, counting its script calls (each one a Redis round trip)."""

    calls = 0

    async def _eval(self, script: str, keys: list[str], argv: list[str]) -> Any:
        self.calls += 1
        return await super()._eval(script, keys, argv)


async def test_a_burst_in_one_turn_is_one_call_per_tenant(stack_env: dict[str, str]) -> None:
    """900 claims, then their 900 settlements, from 300 concurrent callers of 3 tenants: 3 script
    calls each way, and the answers are what 900 separate calls would have given."""
    store = CountingStore(stack_env["REDIS_URL"], timeout=2.0)
    tenants = [str(uuid.uuid4()) for _ in range(3)]
    callers = [(tenants[i % 3], i) for i in range(300)]
    try:
        # Each caller claims two keys of its own and one key every caller of its tenant wants.
        claimed = await asyncio.gather(
            *(
                store.claim(
                    tenant,
                    [
                        claim(f"own-{i}-a", f"a{i}"),
                        claim(f"own-{i}-b", f"b{i}"),
                        claim("x", f"x{i}"),
                    ],
                )
                for tenant, i in callers
            )
        )
        assert store.calls == 3
        for (_tenant, i), (a, b, _x) in zip(callers, claimed, strict=True):
            assert (a.status, a.event_id) == ("claimed", f"a{i}")
            assert (b.status, b.event_id) == ("claimed", f"b{i}")
        for tenant in tenants:
            contested = [
                x for (t, _i), (_a, _b, x) in zip(callers, claimed, strict=True) if t == tenant
            ]
            # The tenant's first caller of the turn wins, as with separate calls in that order;
            # every later one is told it is pending under the winner's event id.
            first, *later = contested
            assert first.status == "claimed"
            assert all(x.status == "pending" and x.event_id == first.event_id for x in later)
        # Settle every caller's own keys in one turn: done for "a", failed for "b".
        await asyncio.gather(
            *(
                store.settle(
                    tenant, [(claim(f"own-{i}-a", f"a{i}"), "t0")], [claim(f"own-{i}-b", f"b{i}")]
                )
                for tenant, i in callers
            )
        )
        assert store.calls == 6
        for tenant, i in callers[:30]:
            a, b = await store.claim(
                tenant, [claim(f"own-{i}-a", "new"), claim(f"own-{i}-b", "new")]
            )
            assert (a.status, a.event_id, a.received_at) == ("done", f"a{i}", "t0")
            assert (b.status, b.event_id) == ("claimed", f"b{i}")  # retry: same id again
    finally:
        await store.close()
