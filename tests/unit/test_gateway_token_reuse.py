"""Gateway mode's token reuse: `authorize` re-signs a key's principal only when its token is
half spent, and the ingest functions check a token's signature once, its time on every use."""

from datetime import UTC, datetime

import pytest

import audit_ingest.auth as auth
from audit_ingest.auth import GatewayAuthenticator, PrincipalSigner
from audit_ingest.domain.gateway_token import (
    LEEWAY_SECONDS,
    PRINCIPAL_HEADER,
    read_principal,
    sign_principal,
    verify_principal,
)
from audit_ingest.domain.principal import Principal
from audit_ingest.errors import Unauthenticated

SECRET = b"s" * 32
NOW = 1_800_000_000
TTL = 60
PRINCIPAL = Principal("t1", "k1", ("events:write",), 5)
HEADER = PRINCIPAL_HEADER.lower()


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_a_key_gets_the_same_token_until_half_its_lifetime_is_spent() -> None:
    signer = PrincipalSigner(SECRET, TTL)
    first = signer.token(PRINCIPAL, NOW)
    assert [signer.token(PRINCIPAL, NOW + s) for s in (0, 1, TTL // 2 - 1)] == [first] * 3
    renewed = signer.token(PRINCIPAL, NOW + TTL // 2)
    assert renewed != first
    # Whichever token a request carries, it has at least half its lifetime left.
    assert verify_principal(renewed, secret=SECRET, now=NOW + TTL // 2 + TTL // 2) == PRINCIPAL


def test_another_principal_or_a_clock_that_went_back_gets_a_new_token() -> None:
    signer = PrincipalSigner(SECRET, TTL)
    first = signer.token(PRINCIPAL, NOW)
    lowered = Principal("t1", "k1", ("events:write",), 1)  # the key's quota changed
    assert verify_principal(signer.token(lowered, NOW + 1), secret=SECRET, now=NOW) == lowered
    earlier = signer.token(PRINCIPAL, NOW - 10)
    assert earlier != first
    assert verify_principal(earlier, secret=SECRET, now=NOW - 10) == PRINCIPAL


async def test_a_remembered_token_is_still_refused_once_expired_or_before_it_was_issued() -> None:
    authenticator = GatewayAuthenticator(SECRET)
    token = sign_principal(PRINCIPAL, secret=SECRET, now=NOW, ttl=TTL)
    assert await authenticator.authenticate({HEADER: token}, at(NOW)) == PRINCIPAL
    late = NOW + TTL + LEEWAY_SECONDS + 1
    with pytest.raises(Unauthenticated, match="expired"):
        await authenticator.authenticate({HEADER: token}, at(late))
    with pytest.raises(Unauthenticated, match="expired"):
        await authenticator.authenticate({HEADER: token}, at(NOW - LEEWAY_SECONDS - 1))
    assert await authenticator.authenticate({HEADER: token}, at(NOW + TTL)) == PRINCIPAL


async def test_a_token_is_decoded_once_and_a_forged_one_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def counting(token: str | None, *, secret: bytes):  # type: ignore[no-untyped-def]
        calls.append(token or "")
        return read_principal(token, secret=secret)

    monkeypatch.setattr(auth, "read_principal", counting)
    authenticator = GatewayAuthenticator(SECRET)
    good = sign_principal(PRINCIPAL, secret=SECRET, now=NOW, ttl=TTL)
    forged = sign_principal(PRINCIPAL, secret=b"f" * 32, now=NOW, ttl=TTL)
    for _ in range(3):
        assert await authenticator.authenticate({HEADER: good}, at(NOW + 1)) == PRINCIPAL
        with pytest.raises(Unauthenticated, match="not valid"):
            await authenticator.authenticate({HEADER: forged}, at(NOW + 1))
    assert calls == [good, forged, forged, forged]


async def test_missing_token_is_refused_without_a_lookup() -> None:
    with pytest.raises(Unauthenticated, match="through the gateway only"):
        await GatewayAuthenticator(SECRET).authenticate({}, at(NOW))
