"""API keys: their format, their hash, and what a stored key allows.

A key looks like ``aik_`` + 40 base62 characters of randomness (about 238 bits) + a 6-character
base62 CRC32 checksum of the random part, like GitHub's tokens: secret scanners can match the
prefix, and a mistyped or made-up key is refused offline, before any database lookup. Only the
SHA-256 hex digest of the whole key is ever stored.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from audit_ingest.domain.principal import Principal
from audit_ingest.errors import Forbidden, Unauthenticated

KEY_PREFIX = "aik_"
SECRET_LENGTH = 40
CHECKSUM_LENGTH = 6
KEY_LENGTH = len(KEY_PREFIX) + SECRET_LENGTH + CHECKSUM_LENGTH
WRITE_SCOPE = "events:write"
DEFAULT_SCOPES = (WRITE_SCOPE,)
DEFAULT_RATE_LIMIT = 10_000

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62_SET = frozenset(_BASE62)


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        digits.append(_BASE62[remainder])
    return "".join(reversed(digits))


def _checksum(secret: str) -> str:
    return _base62(zlib.crc32(secret.encode("ascii")), CHECKSUM_LENGTH)


def format_key(random_bytes: bytes) -> str:
    """Build a key from at least 30 bytes of randomness (pass `secrets.token_bytes(32)`)."""
    if len(random_bytes) < 30:
        raise ValueError("an API key needs at least 30 random bytes")
    secret = _base62(int.from_bytes(random_bytes, "big"), SECRET_LENGTH)
    return f"{KEY_PREFIX}{secret}{_checksum(secret)}"


def is_well_formed(key: str) -> bool:
    """True when the key has the prefix, the length, the alphabet and a matching checksum."""
    if len(key) != KEY_LENGTH or not key.startswith(KEY_PREFIX):
        return False
    body = key[len(KEY_PREFIX) :]
    if not _BASE62_SET.issuperset(body):
        return False
    secret, checksum = body[:SECRET_LENGTH], body[SECRET_LENGTH:]
    return _checksum(secret) == checksum


def hash_key(key: str) -> str:
    """The stored form of a key: SHA-256, lower-case hex (64 characters)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A row of `api_keys`, without its hash."""

    id: str
    tenant_id: str
    name: str | None
    scopes: tuple[str, ...]
    rate_limit: int
    is_active: bool
    expires_at: datetime | None


KeyStatus = Literal["active", "expired", "revoked"]


def key_status(stored: StoredKey, *, now: datetime) -> KeyStatus:
    """What `authorize` would make of the key at `now`, scopes aside: revoked wins over expired."""
    if not stored.is_active:
        return "revoked"
    if stored.expires_at is not None and stored.expires_at <= now:
        return "expired"
    return "active"


def check_presented_key(key: str | None) -> str:
    """Return the key's hash, or refuse a missing or malformed key (401) without I/O."""
    if not key:
        raise Unauthenticated("Send your API key in the X-API-Key header.")
    if not is_well_formed(key):
        raise Unauthenticated("The API key is not valid.")
    return hash_key(key)


def authorize(stored: StoredKey | None, *, now: datetime, scope: str = WRITE_SCOPE) -> Principal:
    """Decide what a stored key allows at `now`.

    :raises Unauthenticated: no such key (401).
    :raises Forbidden: revoked, expired, or without `scope` (403).
    """
    if stored is None:
        raise Unauthenticated("The API key is not valid.")
    if not stored.is_active:
        raise Forbidden("The API key has been revoked.")
    if stored.expires_at is not None and stored.expires_at <= now:
        raise Forbidden("The API key has expired.")
    if scope not in stored.scopes:
        raise Forbidden(f"The API key lacks the {scope!r} scope.")
    return Principal(
        tenant_id=stored.tenant_id,
        api_key_id=stored.id,
        scopes=stored.scopes,
        rate_limit=stored.rate_limit,
    )
