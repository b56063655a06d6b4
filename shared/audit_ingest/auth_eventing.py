"""Eventing mode: deliveries from Knative Eventing, the tenant established by the cluster.

With Eventing's `authentication-oidc` feature, a Trigger delivers each event with
``Authorization: Bearer <JWT>``: a token the Kubernetes API server issued for the Trigger's own
OIDC service account (``<trigger>-oidc-eventing.knative.dev-trigger`` in the Trigger's
namespace), for the subscriber's audience. So the token says *which Trigger* delivered, and
only someone allowed to create Triggers in that namespace can make one deliver.

`EventingAuthenticator` turns that into a principal, never trusting the event itself:

1. the token's signature is verified against the cluster's JWKS (PyJWT's `PyJWKClient`,
   cached), and its issuer, audience and validity window are checked;
2. its subject (``system:serviceaccount:<namespace>:<name>``) must be bound, in the
   deployment's `EVENTING_BINDINGS`, to an API key id;
3. that key is looked up in the key store like any other (cached, stale-if-error), so a
   revoked, expired or scope-less key refuses the deliveries too, and the key's tenant and
   rate limit apply.

A missing, forged, expired or foreign-audience token is 401; a valid token whose subject is
not bound is 403; a JWKS that cannot be fetched is 503 (Eventing retries).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import jwt

from audit_ingest.domain.keys import StoredKey, authorize
from audit_ingest.domain.principal import Principal
from audit_ingest.errors import Forbidden, Unauthenticated, Unavailable
from audit_ingest.keycache import KeyResolver

# Kubernetes signs service account tokens with RSA or ECDSA keys; symmetric algorithms are
# never accepted (no key confusion with a public key used as an HMAC secret).
ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")
LEEWAY_SECONDS = 5


class SigningKeys(Protocol):
    """Where a token's verification key comes from (`PyJWKClient` in production)."""

    def get_signing_key_from_jwt(self, token: str) -> jwt.PyJWK: ...


@runtime_checkable
class KeysById(Protocol):
    """The part of the key store eventing mode needs: a key by its id."""

    async def find_by_id(self, key_id: str) -> StoredKey | None: ...

    async def ping(self, timeout: float) -> bool: ...

    async def close(self) -> None: ...


class KeyIdLookup:
    """Adapts `find_by_id` to the `KeyStore.find` shape, so `KeyResolver` caches by key id."""

    def __init__(self, store: KeysById) -> None:
        self._store = store

    async def find(self, key_id: str) -> StoredKey | None:
        return await self._store.find_by_id(key_id)

    async def ping(self, timeout: float) -> bool:
        return await self._store.ping(timeout)

    async def close(self) -> None:
        await self._store.close()


class ClusterJwks(jwt.PyJWKClient):
    """The API server's JWKS, fetched with this pod's own service account token.

    The token file is re-read on every fetch: kubelet rotates projected tokens.
    """

    def __init__(
        self,
        uri: str,
        *,
        ca_file: str | None,
        token_file: str | None,
        lifespan: float,
        timeout: float = 5.0,
    ) -> None:
        context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        super().__init__(uri, lifespan=lifespan, timeout=timeout, ssl_context=context)
        self._token_file = Path(token_file) if token_file else None

    def fetch_data(self) -> Any:
        if self._token_file is not None:
            try:
                token = self._token_file.read_text().strip()
            except OSError as exc:
                raise jwt.PyJWKClientConnectionError(f"cannot read {self._token_file}") from exc
            self.headers = {**self.headers, "Authorization": f"Bearer {token}"}
        return super().fetch_data()


class EventingAuthenticator:
    def __init__(
        self,
        keys: SigningKeys,
        resolver: KeyResolver,
        *,
        issuer: str,
        audience: str,
        bindings: Mapping[str, str],
    ) -> None:
        self._keys = keys
        self._resolver = resolver
        self._issuer = issuer
        self._audience = audience
        self._bindings = dict(bindings)

    async def authenticate(self, headers: Mapping[str, str], now: datetime) -> Principal:
        subject = await self.verified_subject(headers.get("authorization"), now)
        key_id = self._bindings.get(subject)
        if key_id is None:
            raise Forbidden(f"No tenant is bound to the sender {subject!r} (EVENTING_BINDINGS).")
        return authorize(await self._resolver.resolve(key_id), now=now)

    async def verified_subject(self, authorization: str | None, now: datetime) -> str:
        """The subject of a valid bearer token.

        :raises Unauthenticated: no token, or one that is malformed, forged, expired, from
            another issuer or for another audience.
        :raises Unavailable: the cluster's signing keys could not be fetched.
        """
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "This function accepts Knative Eventing deliveries only "
                "(no OIDC bearer token; is authentication-oidc enabled?)."
            )
        token = token.strip()
        try:
            # PyJWKClient fetches with blocking urllib on a cache miss: off the event loop.
            signing_key = await asyncio.to_thread(self._keys.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as exc:
            raise Unavailable("The cluster's token signing keys could not be fetched.") from exc
        except jwt.PyJWTError:
            raise Unauthenticated("The delivery's token is not valid.") from None
        return self._check(token, signing_key, int(now.timestamp()))

    def _check(self, token: str, signing_key: jwt.PyJWK, now: int) -> str:
        try:
            claims = jwt.decode(
                token,
                signing_key,
                algorithms=list(ALGORITHMS),
                audience=self._audience,
                issuer=self._issuer,
                # Time is checked below against the caller's clock, not the library's.
                options={
                    "require": ["exp", "iat", "iss", "aud", "sub"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
            not_before = int(claims.get("nbf", claims["iat"]))
            if not_before > now + LEEWAY_SECONDS or int(claims["exp"]) < now - LEEWAY_SECONDS:
                raise jwt.ExpiredSignatureError("outside its validity window")
            subject = claims["sub"]
            if not isinstance(subject, str) or not subject:
                raise jwt.InvalidTokenError("no subject")
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("The delivery's token has expired.") from None
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            raise Unauthenticated("The delivery's token is not valid.") from None
        return subject
