"""The key store and key administration against a real PostgreSQL."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from devstack.ports import free_ports
from psycopg import sql
from psycopg.conninfo import make_conninfo

from audit_ingest.adapters.key_admin import list_keys, revoke_key
from audit_ingest.adapters.migrations import migrate
from audit_ingest.adapters.postgres import PostgresKeyStore
from audit_ingest.domain.keys import hash_key
from audit_ingest.errors import KeyStoreUnavailable
from audit_ingest.settings import Settings
from tests.stack import KeyFactory

pytestmark = pytest.mark.integration


def conninfo(settings: Settings) -> str:
    return settings.database_url.get_secret_value()


def test_migrations_are_applied_once(settings: Settings) -> None:
    assert migrate(conninfo(settings)) == []  # the session fixture already migrated
    with psycopg.connect(conninfo(settings)) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert versions == ["0001_api_keys"]


def test_only_the_hash_is_stored(settings: Settings, issue_key: KeyFactory) -> None:
    issued = issue_key()
    with psycopg.connect(conninfo(settings)) as conn:
        row = conn.execute(
            "SELECT key_hash FROM api_keys WHERE id = %s", (issued.stored.id,)
        ).fetchone()
        assert row is not None and row[0] == hash_key(issued.secret)
        secret_part = issued.secret[4:]
        found = conn.execute(
            "SELECT count(*) FROM api_keys WHERE key_hash LIKE %s OR name LIKE %s",
            (f"%{secret_part}%", f"%{secret_part}%"),
        ).fetchone()
        assert found == (0,)


async def test_find_returns_the_key_and_stamps_last_used(
    settings: Settings, issue_key: KeyFactory
) -> None:
    issued = issue_key(rate_limit=42, scopes=("events:write", "events:read"))
    store = PostgresKeyStore(conninfo(settings))
    try:
        found = await store.find(hash_key(issued.secret))
        assert found is not None
        assert (found.id, found.tenant_id, found.rate_limit) == (
            issued.stored.id,
            issued.stored.tenant_id,
            42,
        )
        assert found.scopes == ("events:write", "events:read") and found.is_active
        assert await store.find("0" * 64) is None
        assert await store.ping(1.0)
    finally:
        await store.close()
    rows = list_keys(conninfo(settings), uuid.UUID(issued.stored.tenant_id))
    (listed,) = rows
    assert listed.last_used_at is not None and listed.status == "active"
    assert datetime.now(UTC) - listed.last_used_at < timedelta(minutes=1)


def last_used(settings: Settings, key_id: str) -> datetime | None:
    with psycopg.connect(conninfo(settings)) as conn:
        row = conn.execute("SELECT last_used_at FROM api_keys WHERE id = %s", (key_id,)).fetchone()
    assert row is not None
    value = row[0]
    assert value is None or isinstance(value, datetime)
    return value


async def test_revoked_and_expired_keys_come_back_as_such_and_are_not_stamped(
    settings: Settings, issue_key: KeyFactory
) -> None:
    revoked = issue_key()
    assert revoke_key(conninfo(settings), uuid.UUID(revoked.stored.id))
    assert not revoke_key(conninfo(settings), uuid.uuid4())
    expired = issue_key(expires_at=datetime.now(UTC) - timedelta(days=1))
    usable = issue_key(expires_at=datetime.now(UTC) + timedelta(days=1))
    store = PostgresKeyStore(conninfo(settings))
    try:
        found = await store.find(hash_key(revoked.secret))
        assert found is not None and not found.is_active
        old = await store.find(hash_key(expired.secret))
        assert old is not None and old.expires_at is not None
        by_id = await store.find_by_id(revoked.stored.id)
        assert by_id is not None and not by_id.is_active
        assert await store.find_by_id(expired.stored.id) is not None
        assert await store.find(hash_key(usable.secret)) is not None
    finally:
        await store.close()
    # A request refused as revoked or expired is not a use of the key.
    assert last_used(settings, revoked.stored.id) is None
    assert last_used(settings, expired.stored.id) is None
    assert last_used(settings, usable.stored.id) is not None


async def test_a_read_only_server_is_only_read(settings: Settings, issue_key: KeyFactory) -> None:
    """A read replica (here: a role whose sessions are read-only, as on a hot standby) serves
    lookups; last_used_at is left alone there."""
    role = f"replica_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo(settings), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT, UPDATE ON api_keys TO {}").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(
                sql.Identifier(role)
            )
        )
    issued = issue_key()
    store = PostgresKeyStore(make_conninfo(conninfo(settings), user=role))
    try:
        found = await store.find(hash_key(issued.secret))
        assert found is not None and found.id == issued.stored.id
        by_id = await store.find_by_id(issued.stored.id)
        assert by_id is not None and by_id.tenant_id == issued.stored.tenant_id
    finally:
        await store.close()
        with psycopg.connect(conninfo(settings), autocommit=True) as conn:
            conn.execute(sql.SQL("REVOKE ALL ON api_keys FROM {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert last_used(settings, issued.stored.id) is None


async def test_database_down_is_unavailable_quickly() -> None:
    (port,) = free_ports(1)
    store = PostgresKeyStore(f"postgresql://postgres@127.0.0.1:{port}/audit", timeout=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(KeyStoreUnavailable):
            await store.find("0" * 64)
        assert not await store.ping(0.5)
    finally:
        await store.close()
    assert time.monotonic() - started < 5
