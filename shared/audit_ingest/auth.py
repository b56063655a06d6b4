"""Establishing the caller: one interface, one implementation per deployment mode.

- `InlineAuthenticator` resolves `X-API-Key` itself (cache, then PostgreSQL): local runs and
  deployments without APISIX. The `authorize` function uses it too.
- `GatewayAuthenticator` accepts only a principal signed by `authorize` and forwarded by
  APISIX; it never reads `X-API-Key`, so a request that bypasses the gateway gets 401.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from cachetools import LRUCache

from audit_ingest.domain.gateway_token import (
    PRINCIPAL_HEADER,
    SignedPrincipal,
    read_principal,
    sign_principal,
)
from audit_ingest.domain.keys import WRITE_SCOPE, authorize, check_presented_key
from audit_ingest.domain.principal import Principal
from audit_ingest.errors import Forbidden
from audit_ingest.keycache import KeyResolver

API_KEY_HEADER = "X-API-Key"


class Authenticator(Protocol):
    async def authenticate(self, headers: Mapping[str, str], now: datetime) -> Principal:
        """The caller's principal; raises Unauthenticated, Forbidden or KeyStoreUnavailable."""
        ...


class InlineAuthenticator:
    def __init__(self, resolver: KeyResolver) -> None:
        self._resolver = resolver

    async def authenticate(self, headers: Mapping[str, str], now: datetime) -> Principal:
        key_hash = check_presented_key(headers.get(API_KEY_HEADER.lower()))
        stored = await self._resolver.resolve(key_hash)
        return authorize(stored, now=now)


class GatewayAuthenticator:
    """Checks the signed principal; a token already checked is remembered (`read_principal`
    depends on its bytes only: PyJWT's decode costs more than the rest of a request's auth),
    and its validity window is checked on every use."""

    def __init__(self, secret: bytes, *, remembered: int = 4096) -> None:
        self._secret = secret
        # Only tokens whose signature verified get in: a forged one is refused each time.
        self._read: LRUCache[str, SignedPrincipal] = LRUCache(maxsize=remembered)

    async def authenticate(self, headers: Mapping[str, str], now: datetime) -> Principal:
        token = headers.get(PRINCIPAL_HEADER.lower())
        signed = self._read.get(token) if token else None
        if signed is None:
            signed = read_principal(token, secret=self._secret)
            assert token is not None  # read_principal refuses a missing token
            self._read[token] = signed
        principal = signed.valid_at(int(now.timestamp()))
        if WRITE_SCOPE not in principal.scopes:  # authorize checks it too; never trust one hop
            raise Forbidden(f"The API key lacks the {WRITE_SCOPE!r} scope.")
        return principal


class PrincipalSigner:
    """Signs the principal `authorize` answers with, reusing a token while it is fresh.

    A key's requests within half the token's lifetime get the same token (signing is PyJWT's
    encode, per request otherwise); each still had its key resolved and checked first, so a
    revoked key is refused as soon as without the reuse. The ingest function then meets the
    same token again, and `GatewayAuthenticator` remembers it.
    """

    def __init__(self, secret: bytes, ttl: int, *, remembered: int = 4096) -> None:
        self._secret = secret
        self._ttl = ttl
        self._signed: LRUCache[Principal, tuple[str, int]] = LRUCache(maxsize=remembered)

    def token(self, principal: Principal, now: int) -> str:
        cached = self._signed.get(principal)
        if cached is not None:
            token, issued_at = cached
            if issued_at <= now < issued_at + self._ttl // 2:
                return token
        token = sign_principal(principal, secret=self._secret, now=now, ttl=self._ttl)
        self._signed[principal] = (token, now)
        return token
