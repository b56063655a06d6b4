"""Idempotency records in Redis: claim before producing, settle after the broker answers.

Each key moves through `pending` (an attempt is producing) to `done` (retries get the original
event_id) or `retry` (the attempt failed: the next attempt is processed normally, under the same
event_id). A pending value carries its deadline (`pending|id|fp|deadline`, in the Redis
server's milliseconds): past it, the owner is taken for dead and the next claim takes the key
over like a `retry` one, under the same event_id when the content matches. So a process killed
after its record was written does not lead to a second copy under a new event_id: the copy
its client's retry writes shares the first one's id. Every key lives for the retention (24 h)
whatever its state. A claim whose record outlived its request stays pending, its deadline moved
to as long as the producer may still write the record (`held_ttl`), until the producer's report
settles it. Claims and settlements are Lua scripts, atomic on the server and one round trip for
a whole batch (keys of one tenant share a hash slot, so this works on Redis Cluster too); the
claims (and the settlements) of one tenant made in one event-loop turn go out as one script
call (`turn_batch`).

Deadlines are read from the server's clock (`TIME`), so functions whose clocks disagree agree
on when a claim has expired. A pending value in the earlier form, `pending|id|fp` with a key
TTL (written by a process of the previous release during a rolling update), is left to expire
by its TTL as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from audit_ingest.adapters.turn_batch import TurnBatch
from audit_ingest.domain.idempotency import RETENTION_SECONDS, Claim, ClaimState, storage_key
from audit_ingest.errors import Unavailable

# Keys per script call: a full batch request (1000 events) is one call; a turn's burst beyond
# that is split, so no single script holds Redis for long.
MAX_KEYS_PER_CALL = 1000

# The values of every key go as ONE argument, each value ended by '\n' (none holds one: event
# ids, fingerprints and timestamps are the service's own). redis-py's asyncio connection
# packs each argument in Python (~0.75 µs apiece here): a claim of 100 keys is 104
# arguments instead of 304. A value with a '\n' in it could only add values, and the count
# check refuses that call whole (the store answers an error: events go on un-de-duplicated).
_VALUES = r"""
local values = {}
for value in string.gmatch(ARGV[2], '([^\n]*)\n') do values[#values + 1] = value end
if #values ~= 2 * #KEYS then
  return redis.error_reply('ERR audit-ingest: ' .. #values .. ' values for ' .. #KEYS .. ' keys')
end
"""

# `now_ms()`: the server's clock in milliseconds. Redis before 5 replicates a script by its
# text, and refuses a write after TIME unless the script asks for its effects to be replicated
# instead (`replicate_commands`: the default since Redis 5, and a no-op returning true since 7).
_NOW = r"""
redis.replicate_commands()
local function now_ms()
  local clock = redis.call('TIME')
  return tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end
"""

# A stored value that no longer holds its key: a failed attempt's (`retry`) or a pending one
# past its deadline. Returns its event id and fingerprint, or nil while the value stands.
_TAKEN_OVER = r"""
local function taken_over(cur, now)
  local id, fp = string.match(cur, '^retry|([^|]*)|([^|]*)$')
  if id then return id, fp end
  local deadline
  id, fp, deadline = string.match(cur, '^pending|([^|]*)|([^|]*)|(%d+)$')
  if id and tonumber(deadline) <= now then return id, fp end
  return nil
end
"""

# KEYS: storage keys. ARGV[1]: how long a claim stays pending (ms); ARGV[2]: per key, event id
# and fingerprint; ARGV[3]: retention (s).
_CLAIM = (
    _VALUES
    + _NOW
    + _TAKEN_OVER
    + r"""
local out = {}
local now = now_ms()
local deadline = string.format('%d', now + tonumber(ARGV[1]))
for i, key in ipairs(KEYS) do
  local id, fp = values[2 * i - 1], values[2 * i]
  local cur = redis.call('GET', key)
  if cur then
    local old_id, old_fp = taken_over(cur, now)
    if old_id then
      if old_fp == fp then id = old_id end
      cur = nil
    end
  end
  if not cur then
    redis.call('SET', key, 'pending|' .. id .. '|' .. fp .. '|' .. deadline, 'EX', ARGV[3])
    out[i] = 'claimed|' .. id .. '|' .. fp
  else
    out[i] = cur
  end
end
return out
"""
)

# KEYS: storage keys. ARGV[1]: retention (s); ARGV[2]: per key, the new value ('' to keep the
# claim pending and move its deadline to the hold) and the pending value it must still hold,
# without its deadline; ARGV[3]: hold (ms).
_SETTLE = (
    _VALUES
    + _NOW
    + r"""
local held = nil  -- read the clock only when a claim is held: most settlements set a value
for i, key in ipairs(KEYS) do
  local expected = values[2 * i] .. '|'
  local cur = redis.call('GET', key)
  if cur and string.sub(cur, 1, #expected) == expected then
    local value = values[2 * i - 1]
    if value == '' then
      held = held or string.format('%d', now_ms() + tonumber(ARGV[3]))
      value = expected .. held
    end
    redis.call('SET', key, value, 'EX', ARGV[1])
  end
end
return #KEYS
"""
)

# KEYS[1]: a storage key. The stored value, or false when the next claim would take it over.
_LOOKUP = (
    _NOW
    + _TAKEN_OVER
    + r"""
local cur = redis.call('GET', KEYS[1])
if not cur then return false end
if taken_over(cur, now_ms()) then return false end
return cur
"""
)


class IdempotencyUnavailable(Unavailable):
    code = "idempotency_unavailable"


class RedisIdempotencyStore:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 0.1,
        pending_ttl: float = 15.0,
        held_ttl: float = 65.0,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._timeout = timeout
        # After a failure the store is skipped for `retry_interval` (requests go on without
        # de-duplication at once): a stalled Redis costs one timeout per interval, not one
        # per request.
        self._retry_interval = retry_interval
        self._clock = clock
        self._down_until = 0.0
        self._pending_ttl_ms = str(int(pending_ttl * 1000))
        self._held_ttl_ms = str(int(held_ttl * 1000))
        self._redis: Redis | None = None
        # (storage key, event id, fingerprint) -> the script's answer for that key.
        self._claims: TurnBatch[tuple[str, str, str], str] = TurnBatch(
            self._send_claims, max_items=MAX_KEYS_PER_CALL
        )
        # (storage key, new value or '' to extend, expected pending value) -> nothing.
        self._settlements: TurnBatch[tuple[str, str, str], None] = TurnBatch(
            self._send_settlements, max_items=MAX_KEYS_PER_CALL
        )

    def _client(self) -> Redis:
        if self._redis is None:
            self._redis = Redis.from_url(
                self._url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                decode_responses=True,
            )
        return self._redis

    async def claim(self, tenant_id: str, claims: Sequence[Claim]) -> list[ClaimState]:
        items = [
            (storage_key(tenant_id, claim.key), claim.event_id, claim.fingerprint)
            for claim in claims
        ]
        return [_state(answer) for answer in await self._claims.submit(tenant_id, items)]

    async def _send_claims(self, _tenant: str, items: list[tuple[str, str, str]]) -> list[str]:
        values = "".join([f"{event_id}\n{fingerprint}\n" for _, event_id, fingerprint in items])
        argv = [self._pending_ttl_ms, values, str(RETENTION_SECONDS)]
        answers = await self._eval(_CLAIM, [key for key, _, _ in items], argv)
        return [str(answer) for answer in answers]

    async def lookup(self, tenant_id: str, key: str) -> ClaimState | None:
        """What the store holds for `key` now (read only); None when nothing is settled or
        pending (no record, a failed attempt's, or a pending one past its deadline: the next
        attempt is processed normally)."""
        stored = await self._eval(_LOOKUP, [storage_key(tenant_id, key)], [])
        return None if stored is None else _state(str(stored))

    async def settle(
        self,
        tenant_id: str,
        done: Sequence[tuple[Claim, str]],
        failed: Sequence[Claim],
        held: Sequence[Claim] = (),
    ) -> None:
        """Record `done` (claim, received_at) and `failed` claims, and move the deadline of
        `held` ones (still pending) to `held_ttl` from now; best effort."""
        items: list[tuple[str, str, str]] = []
        for claim, received_at in done:
            value = f"done|{claim.event_id}|{claim.fingerprint}|{received_at}"
            items.append(_settlement(tenant_id, claim, value))
        for claim in failed:
            items.append(
                _settlement(tenant_id, claim, f"retry|{claim.event_id}|{claim.fingerprint}")
            )
        for claim in held:
            items.append(_settlement(tenant_id, claim, ""))
        # On failure the claims pass their deadlines on their own; a retry before that waits.
        await self._settlements.submit(tenant_id, items)

    async def _send_settlements(
        self, _tenant: str, items: list[tuple[str, str, str]]
    ) -> list[None]:
        values = "".join([f"{value}\n{expected}\n" for _, value, expected in items])
        argv = [str(RETENTION_SECONDS), values, self._held_ttl_ms]
        await self._eval(_SETTLE, [key for key, _, _ in items], argv)
        return [None] * len(items)

    async def _eval(self, script: str, keys: list[str], argv: list[str]) -> Any:
        return await self._call(lambda: self._client().eval(script, len(keys), *keys, *argv))

    async def _call(self, command: Callable[[], Any]) -> Any:
        """Run one Redis command; a failure skips the store for `retry_interval`."""
        if self._clock() < self._down_until:
            raise IdempotencyUnavailable("The idempotency store failed moments ago.")
        try:
            return await command()
        except (RedisError, OSError) as exc:
            self._down_until = self._clock() + self._retry_interval
            raise IdempotencyUnavailable("The idempotency store is unavailable.") from exc

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


def _settlement(tenant_id: str, claim: Claim, value: str) -> tuple[str, str, str]:
    """Set `value` (or hold, when '') if the key still holds this claim's pending value."""
    expected = f"pending|{claim.event_id}|{claim.fingerprint}"
    return storage_key(tenant_id, claim.key), value, expected


def _state(answer: str) -> ClaimState:
    parts = answer.split("|")
    status = parts[0]
    if status == "claimed":
        return ClaimState("claimed", parts[1], parts[2])
    if status == "pending":
        return ClaimState("pending", parts[1], parts[2])
    if status == "done":
        return ClaimState("done", parts[1], parts[2], received_at=parts[3])
    raise ValueError(f"unexpected idempotency record {status!r}")
