"""The principal the gateway vouches for: a short-lived HS256 JWT (RFC 7519) in a header.

`authorize` (behind APISIX forward-auth) signs it; the ingest functions in gateway mode accept
a principal only when the signature verifies with the shared secret and it has not expired, so
a request that bypasses the gateway (or forges the header) gets 401. PyJWT does the encoding
and the checks (signature, `exp`, `iat`, audience), not hand-written code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from audit_ingest.domain.principal import Principal
from audit_ingest.errors import Unauthenticated

PRINCIPAL_HEADER = "X-Audit-Principal"
TENANT_HEADER = "X-Audit-Tenant-Id"
KEY_ID_HEADER = "X-Audit-Key-Id"
RATE_LIMIT_HEADER = "X-Audit-Rate-Limit"
# Set by APISIX (proxy-rewrite, from $remote_addr) on every request it forwards.
CLIENT_IP_HEADER = "X-Audit-Client-Ip"
AUDIENCE = "audit-ingest"
ALGORITHM = "HS256"
LEEWAY_SECONDS = 5


def sign_principal(principal: Principal, *, secret: bytes, now: int, ttl: int) -> str:
    """A token for `principal`, valid `ttl` seconds from `now` (Unix seconds)."""
    claims: dict[str, Any] = {
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + ttl,
        "tenant_id": principal.tenant_id,
        "api_key_id": principal.api_key_id,
        "scopes": list(principal.scopes),
        "rate_limit": principal.rate_limit,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


@dataclass(frozen=True, slots=True)
class SignedPrincipal:
    """What a token says, its signature and audience checked: who, and when it is valid."""

    principal: Principal
    issued_at: int
    expires_at: int

    def valid_at(self, now: int) -> Principal:
        """The principal, if the token is valid at `now` (Unix seconds, with the leeway).

        :raises Unauthenticated: issued in the future or expired.
        """
        if self.issued_at > now + LEEWAY_SECONDS or self.expires_at < now - LEEWAY_SECONDS:
            raise Unauthenticated("The gateway's signed principal has expired.")
        return self.principal


def verify_principal(token: str | None, *, secret: bytes, now: int) -> Principal:
    """The principal in a valid token.

    :raises Unauthenticated: missing, malformed, forged, expired or for another audience.
    """
    return read_principal(token, secret=secret).valid_at(now)


def read_principal(token: str | None, *, secret: bytes) -> SignedPrincipal:
    """A token's principal and validity window; its signature and audience checked, not its
    time (`SignedPrincipal.valid_at` checks that, against the caller's clock).

    The answer depends on the token's bytes and the secret only, so a caller may keep it for
    the same token and call `valid_at` on each use.

    :raises Unauthenticated: missing, malformed, forged or for another audience.
    """
    if not token:
        raise Unauthenticated(
            "This function accepts requests through the gateway only (no signed principal)."
        )
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            leeway=LEEWAY_SECONDS,
            # Time is checked by `valid_at`, against the caller's clock, not the library's.
            options={"require": ["exp", "iat", "aud"], "verify_exp": False, "verify_iat": False},
        )
        return SignedPrincipal(
            Principal(
                tenant_id=_text(claims, "tenant_id"),
                api_key_id=_text(claims, "api_key_id"),
                scopes=tuple(_texts(claims, "scopes")),
                rate_limit=int(claims["rate_limit"]),
            ),
            issued_at=_seconds(claims, "iat"),
            expires_at=_seconds(claims, "exp"),
        )
    except (jwt.InvalidTokenError, KeyError, TypeError, ValueError):
        raise Unauthenticated("The gateway's signed principal is not valid.") from None


def _seconds(claims: dict[str, Any], name: str) -> int:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(name)
    return int(value)


def _text(claims: dict[str, Any], name: str) -> str:
    value = claims[name]
    if not isinstance(value, str) or not value:
        raise ValueError(name)
    return value


def _texts(claims: dict[str, Any], name: str) -> list[str]:
    values = claims[name]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(name)
    return values
