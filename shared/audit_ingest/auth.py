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

from audit_ingest.domain.gateway_token import PRINCIPAL_HEADER, verify_principal
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
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    async def authenticate(self, headers: Mapping[str, str], now: datetime) -> Principal:
        principal = verify_principal(
            headers.get(PRINCIPAL_HEADER.lower()), secret=self._secret, now=int(now.timestamp())
        )
        if WRITE_SCOPE not in principal.scopes:  # authorize checks it too; never trust one hop
            raise Forbidden(f"The API key lacks the {WRITE_SCOPE!r} scope.")
        return principal
