"""Key rotation: a successor with the same rights, and a bounded overlap for the old key.

Rotation is one transaction: the old row is locked, the new key inserted (same tenant, name,
scopes and rate limit) and the old key's `expires_at` set to the database's `now()` + grace.
An old key that already expires sooner keeps its earlier expiry (rotation never extends a key),
and a revoked key cannot be rotated (create a new one instead).

Running functions apply the new `expires_at` within their key cache TTL (<= 60 s): a cached
key is re-checked against its own `expires_at` on every request, so a grace period ends on
time, and a grace of 0 takes effect within the TTL.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from audit_ingest.adapters.key_admin import IssuedKey
from audit_ingest.adapters.postgres import row_to_key
from audit_ingest.domain.keys import StoredKey, format_key, hash_key

_LOCK = """
SELECT id::text, tenant_id::text, name, scopes, rate_limit, is_active, expires_at, now()
FROM api_keys WHERE id = %s FOR UPDATE
"""
_INSERT = """
INSERT INTO api_keys (id, key_hash, tenant_id, name, scopes, rate_limit, expires_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)
RETURNING id::text, tenant_id::text, name, scopes, rate_limit, is_active, expires_at, created_at
"""
_EXPIRE = """
UPDATE api_keys SET expires_at = %s WHERE id = %s
RETURNING id::text, tenant_id::text, name, scopes, rate_limit, is_active, expires_at
"""

_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
MAX_GRACE = timedelta(days=365)


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


def parse_duration(text: str) -> timedelta:
    """`86400`, `90s`, `15m`, `24h`, `7d` or combinations such as `1h30m`; at most a year.

    :raises ValueError: for anything else.
    """
    value = text.strip().lower()
    if value.isdigit():
        seconds = int(value)
    else:
        parts = _DURATION.findall(value)
        if not parts or "".join(number + unit for number, unit in parts) != value:
            raise ValueError(f"{text!r} is not a duration such as 24h, 30m, 90s or 3600")
        seconds = sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    duration = timedelta(seconds=seconds)
    if duration > MAX_GRACE:
        raise ValueError(f"{text!r} is longer than {MAX_GRACE.days} days")
    return duration


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
    new_id = uuid.uuid4()
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
        inserted = conn.execute(
            _INSERT,
            (
                new_id,
                hash_key(secret),
                old.tenant_id,
                old.name,
                list(old.scopes),
                old.rate_limit,
                expires_at,
            ),
        ).fetchone()
        updated = conn.execute(_EXPIRE, (ends, key_id)).fetchone()
    assert inserted is not None
    assert updated is not None
    issued = IssuedKey(stored=row_to_key(inserted[:7]), secret=secret, created_at=inserted[7])
    return Rotation(new=issued, old=row_to_key(updated), rotated_at=now)
