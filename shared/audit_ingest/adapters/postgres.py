"""The key store on PostgreSQL: one indexed lookup by hash, through a lazily opened pool."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from audit_ingest.domain.keys import StoredKey
from audit_ingest.errors import KeyStoreUnavailable

log = logging.getLogger(__name__)

# Refreshing a cached key also stamps last_used_at: one round trip, at most once per cache TTL
# per key and replica, instead of a write on every request.
_FIND = """
UPDATE api_keys SET last_used_at = now()
WHERE key_hash = %s
RETURNING id::text, tenant_id::text, name, scopes, rate_limit, is_active, expires_at
"""

# Eventing mode names a key by its id (EVENTING_BINDINGS), not by the secret's hash.
_FIND_BY_ID = """
UPDATE api_keys SET last_used_at = now()
WHERE id = %s
RETURNING id::text, tenant_id::text, name, scopes, rate_limit, is_active, expires_at
"""


def row_to_key(row: tuple[Any, ...]) -> StoredKey:
    key_id, tenant_id, name, scopes, rate_limit, is_active, expires_at = row
    return StoredKey(
        id=key_id,
        tenant_id=tenant_id,
        name=name,
        scopes=tuple(scopes or ()),
        rate_limit=int(rate_limit),
        is_active=bool(is_active),
        expires_at=expires_at,
    )


class PostgresKeyStore:
    def __init__(self, conninfo: str, *, max_size: int = 4, timeout: float = 2.0) -> None:
        self._timeout = timeout
        statement_timeout_ms = int(timeout * 1000)
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            timeout=timeout,
            open=False,
            kwargs={
                "connect_timeout": max(1, int(timeout)),
                "options": f"-c statement_timeout={statement_timeout_ms}",
                "autocommit": True,
            },
            name="api-keys",
        )
        self._opened = False

    async def _ensure_open(self) -> None:
        if not self._opened:
            self._opened = True
            # wait=False: a database that is down at start must not stop the function from
            # serving keys it can still vouch for; the pool keeps trying in the background.
            await self._pool.open(wait=False)

    async def find(self, key_hash: str) -> StoredKey | None:
        await self._ensure_open()
        try:
            async with self._pool.connection() as conn:
                cursor = conn.cursor(row_factory=tuple_row)
                await cursor.execute(_FIND, (key_hash,))
                row = await cursor.fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("key store unavailable: %s", type(exc).__name__)
            raise KeyStoreUnavailable("The API key store is unavailable; retry shortly.") from exc
        return None if row is None else row_to_key(row)

    async def find_by_id(self, key_id: str) -> StoredKey | None:
        """The key with this id (a UUID), or None. Raises `KeyStoreUnavailable`."""
        try:
            uuid.UUID(key_id)
        except ValueError:
            return None  # not an id at all: no such key, and no query
        await self._ensure_open()
        try:
            async with self._pool.connection() as conn:
                cursor = conn.cursor(row_factory=tuple_row)
                await cursor.execute(_FIND_BY_ID, (key_id,))
                row = await cursor.fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("key store unavailable: %s", type(exc).__name__)
            raise KeyStoreUnavailable("The API key store is unavailable; retry shortly.") from exc
        return None if row is None else row_to_key(row)

    async def ping(self, timeout: float) -> bool:
        await self._ensure_open()
        try:
            async with self._pool.connection(timeout=timeout) as conn:
                await conn.execute("SELECT 1")
        except (psycopg.Error, PoolTimeout):
            return False
        return True

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()
