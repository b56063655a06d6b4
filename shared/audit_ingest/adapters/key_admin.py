"""Key administration on PostgreSQL (the CLI's side of `api_keys`; synchronous): every
statement that writes the table is here.

Rotation is one transaction: the old row is locked, the new key inserted (same tenant, name,
scopes and rate limit) and the old key's `expires_at` set to the database's `now()` + grace.
An old key that already expires sooner keeps its earlier expiry (rotation never extends a key),
and a revoked key cannot be rotated (create a new one instead). Running functions apply the new
`expires_at` within their key cache TTL (<= 60 s): a cached key is re-checked against its own
`expires_at` on every request, so a grace period ends on time.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from audit_ingest.adapters.postgres import row_to_key
from audit_ingest.domain.keys import KeyStatus, StoredKey, format_key, hash_key, key_status

_INSERT = """
INSERT INTO api_keys (id, key_hash, tenant_id, name, scopes, rate_limit, expires_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)
RETURNING id::text, tenant_id::text, name, scopes, rate_limit, is_active, expires_at, created_at
"""
_LOCK = """
SELECT id::text, tenant_id::text, name, scopes, rate_limit, is_active, expires_at, now()
FROM api_keys WHERE id = %s FOR UPDATE
"""
_EXPIRE = """
UPDATE api_keys SET expires_at = %s WHERE id = %s
RETURNING id::text, tenant_id::text, name, scopes, rate_limit, is_active, expires_at
"""

_SELECT = """
SELECT id::text, tenant_id::text, name, scopes, rate_limit, is_active, expires_at,
       created_at, last_used_at, statement_timestamp()
FROM api_keys
"""
# The row is locked first, so the previous limit returned is the one this update replaced.
_SET_RATE_LIMIT = """
UPDATE api_keys AS k SET rate_limit = %s
FROM (SELECT id, rate_limit FROM api_keys WHERE id = %s FOR UPDATE) AS previous
WHERE k.id = previous.id
RETURNING previous.rate_limit
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
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return _insert(
            conn,
            secret,
            tenant_id=tenant_id,
            name=name,
            scopes=scopes,
            rate_limit=rate_limit,
            expires_at=expires_at,
        )


def _insert(
    conn: psycopg.Connection[Any],
    secret: str,
    *,
    tenant_id: uuid.UUID | str,
    name: str | None,
    scopes: tuple[str, ...],
    rate_limit: int,
    expires_at: datetime | None,
) -> IssuedKey:
    """Store a new key under a new id (only the secret's hash is stored)."""
    row = conn.execute(
        _INSERT,
        (uuid.uuid4(), hash_key(secret), tenant_id, name, list(scopes), rate_limit, expires_at),
    ).fetchone()
    assert row is not None
    return IssuedKey(stored=row_to_key(row[:7]), secret=secret, created_at=row[7])


@dataclass(frozen=True, slots=True)
class ListedKey:
    """A key as `keys list` shows it; `status` is as of the database's clock when listed."""

    stored: StoredKey
    created_at: datetime
    last_used_at: datetime | None
    status: KeyStatus


def list_keys(conninfo: str, tenant_id: uuid.UUID | None = None) -> list[ListedKey]:
    query = _SELECT
    params: tuple[object, ...] = ()
    if tenant_id is not None:
        query += " WHERE tenant_id = %s"
        params = (tenant_id,)
    query += " ORDER BY created_at"
    with psycopg.connect(conninfo) as conn:
        rows = conn.cursor(row_factory=tuple_row).execute(query, params).fetchall()
    listed = []
    for row in rows:
        stored = row_to_key(row[:7])
        created_at, last_used_at, now = row[7:]
        listed.append(ListedKey(stored, created_at, last_used_at, key_status(stored, now=now)))
    return listed


def revoke_key(conninfo: str, key_id: uuid.UUID) -> bool:
    """Deactivate a key; True when it existed. Caches drop it within their TTL (<= 60 s)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cursor = conn.execute("UPDATE api_keys SET is_active = false WHERE id = %s", (key_id,))
        return cursor.rowcount == 1


def set_rate_limit(conninfo: str, key_id: uuid.UUID, rate_limit: int) -> int | None:
    """Change a key's requests per minute; the limit it replaced, or None when there is no
    such key. Running processes apply it when their cached copy of the key expires (within
    the key cache TTL): the functions in inline mode, and `authorize`, whose answer gives
    APISIX's limit-count its quota (which limit-count applies from the key's next window)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(_SET_RATE_LIMIT, (rate_limit, key_id)).fetchone()
    return None if row is None else int(row[0])


class RotationError(Exception):
    """The key cannot be rotated (unknown or revoked); the message says why."""


@dataclass(frozen=True, slots=True)
class Rotation:
    """The successor (its secret shown once) and the old key as it is now stored."""

    new: IssuedKey
    old: StoredKey
    rotated_at: datetime

    @property
    def old_expires_at(self) -> datetime:
        assert self.old.expires_at is not None  # rotation always sets it
        return self.old.expires_at


def rotate_key(
    conninfo: str,
    key_id: uuid.UUID,
    *,
    grace: timedelta,
    expires_at: datetime | None = None,
) -> Rotation:
    """Issue a successor of `key_id` and let the old key expire after `grace`.

    :param grace: how long the old key keeps working; 0 ends it now.
    :param expires_at: the new key's own expiry (default: none).
    :raises RotationError: no such key, or it is revoked.
    """
    secret = format_key(secrets.token_bytes(32))
    with psycopg.connect(conninfo) as conn, conn.transaction():
        row = conn.execute(_LOCK, (key_id,)).fetchone()
        if row is None:
            raise RotationError(f"no key with id {key_id}")
        old = row_to_key(row[:7])
        now: datetime = row[7]
        if not old.is_active:
            raise RotationError(
                f"key {key_id} is revoked; a revoked key stays revoked (create a new key)"
            )
        ends = now + grace
        if old.expires_at is not None and old.expires_at < ends:
            ends = old.expires_at  # rotation never extends a key's life
        issued = _insert(
            conn,
            secret,
            tenant_id=old.tenant_id,
            name=old.name,
            scopes=old.scopes,
            rate_limit=old.rate_limit,
            expires_at=expires_at,
        )
        updated = conn.execute(_EXPIRE, (ends, key_id)).fetchone()
    assert updated is not None
    return Rotation(new=issued, old=row_to_key(updated), rotated_at=now)
