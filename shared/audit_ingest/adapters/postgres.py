"""The key store on PostgreSQL: one indexed lookup by hash, through a lazily opened pool.

A lookup also stamps the key's `last_used_at` (only when the key is usable: not revoked, not
expired), except on a read-only server (a read replica), where it only reads.
"""

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

# A lookup returns the key's row whatever its state (a revoked or expired key must get 403,
# not 401), and stamps last_used_at only when the key is usable now: a request refused as
# revoked or expired is not a use. The conditions are on the row being updated (`k`), so a
# revocation committed meanwhile is honoured. A data-modifying CTE runs to completion even
# though the outer query does not read it. One round trip, at most once per key cache TTL per
# key and process (a cache hit does not query), instead of a write on every request.
_FIND = """
WITH found AS (SELECT * FROM api_keys WHERE key_hash = %s),
stamped AS (
    UPDATE api_keys AS k SET last_used_at = now()
    FROM found
    WHERE k.id = found.id AND k.is_active AND (k.expires_at IS NULL OR k.expires_at > now())
)
SELECT id::text, tenant_id::text, name, scopes, rate_limit, is_active, expires_at FROM found
"""

# Eventing mode names a key by its id (EVENTING_BINDINGS), not by the secret's hash.
_FIND_BY_ID = """
WITH found AS (SELECT * FROM api_keys WHERE id = %s),
stamped AS (
    UPDATE api_keys AS k SET last_used_at = now()
    FROM found
    WHERE k.id = found.id AND k.is_active AND (k.expires_at IS NULL OR k.expires_at > now())
)
SELECT id::text, tenant_id::text, name, scopes, rate_limit, is_active, expires_at FROM found
"""

# On a server that accepts no writes (a hot standby, or default_transaction_read_only on: both
# reported to the client by PostgreSQL 14+), lookups only read, so a read replica can serve
# the key store; last_used_at is then not maintained.
_READ = """
SELECT id::text, tenant_id::text, name, scopes, rate_limit, is_active, expires_at
FROM api_keys WHERE key_hash = %s
"""
_READ_BY_ID = """
SELECT id::text, tenant_id::text, name, scopes, rate_limit, is_active, expires_at
FROM api_keys WHERE id = %s
"""


def _read_only(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server said, on connecting or since, that it accepts no writes."""
    info = conn.info
    return "on" in (
        info.parameter_status("in_hot_standby"),
        info.parameter_status("default_transaction_read_only"),
    )


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
                await cursor.execute(_READ if _read_only(conn) else _FIND, (key_hash,))
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
                await cursor.execute(_READ_BY_ID if _read_only(conn) else _FIND_BY_ID, (key_id,))
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
