"""Key administration on PostgreSQL (the CLI's side of `api_keys`; synchronous)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from audit_ingest.adapters.postgres import row_to_key
from audit_ingest.domain.keys import StoredKey, format_key, hash_key

_INSERT = """
INSERT INTO api_keys (id, key_hash, tenant_id, name, scopes, rate_limit, expires_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)
RETURNING id::text, tenant_id::text, name, scopes, rate_limit, is_active, expires_at, created_at
"""
_SELECT = """
SELECT id::text, tenant_id::text, name, scopes, rate_limit, is_active, expires_at,
       created_at, last_used_at
FROM api_keys
"""


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: `secret` is shown once and stored nowhere."""

    stored: StoredKey
    secret: str
    created_at: datetime


def create_key(
    conninfo: str,
    *,
    tenant_id: uuid.UUID,
    name: str | None,
    scopes: tuple[str, ...],
    rate_limit: int,
    expires_at: datetime | None,
) -> IssuedKey:
    secret = format_key(secrets.token_bytes(32))
    key_id = uuid.uuid4()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            _INSERT,
            (key_id, hash_key(secret), tenant_id, name, list(scopes), rate_limit, expires_at),
        ).fetchone()
    assert row is not None
    return IssuedKey(stored=row_to_key(row[:-1]), secret=secret, created_at=row[-1])


def list_keys(conninfo: str, tenant_id: uuid.UUID | None = None) -> list[tuple[StoredKey, Any]]:
    query = _SELECT
    params: tuple[object, ...] = ()
    if tenant_id is not None:
        query += " WHERE tenant_id = %s"
        params = (tenant_id,)
    query += " ORDER BY created_at"
    with psycopg.connect(conninfo) as conn:
        rows = conn.cursor(row_factory=tuple_row).execute(query, params).fetchall()
    return [(row_to_key(row[:7]), row[7:]) for row in rows]


def revoke_key(conninfo: str, key_id: uuid.UUID) -> bool:
    """Deactivate a key; True when it existed. Caches drop it within their TTL (<= 60 s)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cursor = conn.execute("UPDATE api_keys SET is_active = false WHERE id = %s", (key_id,))
        return cursor.rowcount == 1


def set_rate_limit(conninfo: str, key_id: uuid.UUID, rate_limit: int) -> bool:
    """Change a key's requests per minute; True when it existed. Applies within the key cache
    TTL (inline mode, and the authorize function that feeds APISIX's limit-count)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cursor = conn.execute(
            "UPDATE api_keys SET rate_limit = %s WHERE id = %s", (rate_limit, key_id)
        )
        return cursor.rowcount == 1
