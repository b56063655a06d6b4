"""Key lookups cached in process: fast, bounded, and honest when the key store is down.

- A found key is trusted for `ttl` seconds: that bounds how late a revocation applies (<= 60 s).
- A missing key is remembered for `negative_ttl` seconds, so a flood of bad keys costs the
  database one query per key per interval.
- When the store is unavailable, a key found earlier keeps working for `stale` more seconds
  (static stability); a key never seen gets `KeyStoreUnavailable` (503), never a 401.
- Concurrent misses for one key share a single query.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache

from audit_ingest.domain.keys import StoredKey
from audit_ingest.errors import KeyStoreUnavailable
from audit_ingest.metrics import key_cache_series
from audit_ingest.ports import KeyStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Entry:
    key: StoredKey | None
    fetched_at: float


class KeyResolver:
    def __init__(
        self,
        store: KeyStore,
        *,
        ttl: float,
        negative_ttl: float,
        stale: float,
        size: int,
        clock: Callable[[], float] = time.monotonic,
        failure_backoff: float = 5.0,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._stale = stale
        self._clock = clock
        self._entries: LRUCache[str, _Entry] = LRUCache(maxsize=size)
        self._inflight: dict[str, asyncio.Future[StoredKey | None]] = {}
        # After the store fails, stale keys are served without asking it again until then: a
        # down database costs one timeout per interval, not one per request.
        self._store_down_until = 0.0
        self._failure_backoff = failure_backoff

    async def resolve(self, key_hash: str) -> StoredKey | None:
        """The stored key for this hash (None when there is none).

        :raises KeyStoreUnavailable: the store failed and nothing usable is cached.
        """
        entry = self._entries.get(key_hash)
        now = self._clock()
        if entry is not None:
            limit = self._ttl if entry.key is not None else self._negative_ttl
            if now - entry.fetched_at < limit:
                key_cache_series("hit").inc()
                return entry.key
            if now < self._store_down_until and self._usable_stale(entry, now):
                key_cache_series("stale").inc()
                return entry.key
        key_cache_series("miss").inc()
        pending = self._inflight.get(key_hash)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[StoredKey | None] = asyncio.get_running_loop().create_future()
        self._inflight[key_hash] = future
        try:
            found = await self._fetch(key_hash, entry, now)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters may be none
            raise
        else:
            future.set_result(found)
            return found
        finally:
            del self._inflight[key_hash]

    async def _fetch(self, key_hash: str, entry: _Entry | None, now: float) -> StoredKey | None:
        try:
            found = await self._store.find(key_hash)
        except KeyStoreUnavailable:
            self._store_down_until = self._clock() + self._failure_backoff
            if entry is not None and self._usable_stale(entry, now):
                log.warning("key store down; serving a cached key (stale-if-error)")
                return entry.key
            raise
        self._store_down_until = 0.0
        self._entries[key_hash] = _Entry(found, self._clock())
        return found

    def _usable_stale(self, entry: _Entry, now: float) -> bool:
        return entry.key is not None and now - entry.fetched_at < self._ttl + self._stale
