from datetime import UTC, datetime, timedelta

import pytest

from audit_ingest.domain.keys import (
    KEY_LENGTH,
    KEY_PREFIX,
    authorize,
    check_presented_key,
    format_key,
    hash_key,
    is_well_formed,
    key_status,
)
from audit_ingest.errors import Forbidden, Unauthenticated
from tests.unit.samples import stored

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_format_has_prefix_length_and_checksum() -> None:
    key = format_key(bytes(range(32)))
    assert key.startswith(KEY_PREFIX)
    assert len(key) == KEY_LENGTH
    assert is_well_formed(key)


def test_distinct_randomness_gives_distinct_keys() -> None:
    assert format_key(b"\x01" * 32) != format_key(b"\x02" * 32)


def test_too_little_randomness_is_refused() -> None:
    with pytest.raises(ValueError, match="30 random bytes"):
        format_key(b"\x00" * 16)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),  # checksum off
        lambda k: "xyz_" + k[4:],  # wrong prefix
        lambda k: k + "a",  # too long
        lambda k: k[:10] + "!" + k[11:],  # outside the alphabet
        lambda k: k[:5] + ("A" if k[5] != "A" else "B") + k[6:],  # secret changed
    ],
)
def test_malformed_keys_are_refused_offline(mutate: object) -> None:
    key = format_key(bytes(range(32)))
    assert not is_well_formed(mutate(key))  # type: ignore[operator]


def test_hash_is_sha256_hex() -> None:
    digest = hash_key("aik_x")
    assert len(digest) == 64 and set(digest) <= set("0123456789abcdef")


def test_check_presented_key() -> None:
    key = format_key(bytes(range(32)))
    assert check_presented_key(key) == hash_key(key)
    with pytest.raises(Unauthenticated, match="X-API-Key"):
        check_presented_key(None)
    with pytest.raises(Unauthenticated, match="not valid"):
        check_presented_key("aik_short")


def test_authorize_statuses() -> None:
    principal = authorize(stored(), now=NOW)
    assert (principal.tenant_id, principal.api_key_id, principal.rate_limit) == ("t1", "k1", 10)
    with pytest.raises(Unauthenticated):
        authorize(None, now=NOW)
    with pytest.raises(Forbidden, match="revoked"):
        authorize(stored(is_active=False), now=NOW)
    with pytest.raises(Forbidden, match="expired"):
        authorize(stored(expires_at=NOW - timedelta(seconds=1)), now=NOW)
    with pytest.raises(Forbidden, match="events:write"):
        authorize(stored(scopes=("events:read",)), now=NOW)
    assert authorize(stored(expires_at=NOW + timedelta(days=1)), now=NOW).tenant_id == "t1"


def test_key_status_agrees_with_authorize() -> None:
    cases = [
        (stored(), "active"),
        (stored(expires_at=NOW + timedelta(seconds=1)), "active"),
        (stored(expires_at=NOW), "expired"),
        (stored(expires_at=NOW - timedelta(days=1)), "expired"),
        (stored(is_active=False), "revoked"),
        (stored(is_active=False, expires_at=NOW - timedelta(days=1)), "revoked"),
    ]
    for key, status in cases:
        assert key_status(key, now=NOW) == status
        if status == "active":
            authorize(key, now=NOW)
        else:
            with pytest.raises(Forbidden, match=status):
                authorize(key, now=NOW)
