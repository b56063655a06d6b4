"""Make a running stack ready for the service: schema, topics, keys."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from audit_ingest.adapters.kafka_admin import TopicSpec, create_topics
from audit_ingest.adapters.key_admin import create_key
from audit_ingest.adapters.migrations import migrate
from audit_ingest.adapters.postgres import row_to_key
from audit_ingest.domain.keys import (
    DEFAULT_RATE_LIMIT,
    DEFAULT_SCOPES,
    StoredKey,
    authorize,
    hash_key,
    is_well_formed,
)
from audit_ingest.errors import Forbidden, Unauthenticated
from audit_ingest.logs import KafkaLog
from audit_ingest.settings import Settings

DEMO_TENANT = uuid.UUID("11111111-1111-4111-8111-111111111111")


def stack_settings(env: Mapping[str, str]) -> Settings:
    """Settings for a stack's addresses (`LocalStack.env`), over the process environment."""
    values: dict[str, Any] = {name.lower(): value for name, value in env.items()}
    return Settings(**values)


def provision(settings: Settings, *, partitions: int = 3) -> None:
    """Apply migrations and create the topics (replication 1: a single local broker)."""
    migrate(settings.database_url.get_secret_value())
    config = {"min.insync.replicas": "1", "unclean.leader.election.enable": "false"}
    # librdkafka's lines go to the log (unserved here: nothing polls this admin client), not
    # raw to the terminal, where they would otherwise show when `make run` stops Kafka.
    create_topics(
        {**settings.kafka_connection(), "logger": KafkaLog()},
        [
            TopicSpec(settings.kafka_topic, partitions, 1, config),
            TopicSpec(settings.kafka_dlq_topic, partitions, 1, config),
            # The sealer's checkpoints: one seals partition per events partition, kept forever.
            TopicSpec(settings.seals_topic, partitions, 1, {**config, "retention.ms": "-1"}),
        ],
    )


DEMO_KEY_NAME = "make-run demo"


@dataclass(frozen=True, slots=True)
class DemoKey:
    """`make run`'s demo key: its secret (kept in `file`) and, when it is new, why."""

    secret: str = field(repr=False)
    key_id: str
    tenant_id: str
    file: Path
    new_because: str | None = None
    """None when the kept key was reused; else why a new one was issued."""


def demo_key(settings: Settings, key_file: Path) -> DemoKey:
    """The demo key kept in `key_file` while it is still usable; else a new one, kept there.

    The database holds only keys' hashes, so the secret itself is kept in `key_file` (mode
    0600, next to the stack's data): a local development convenience, never done for a real
    key. The kept key is found by its hash and reused while the service would accept it
    (active, not expired, allowed to write); otherwise a new key is issued and kept instead.
    Nothing is revoked: a key exported from an earlier run keeps working while it is valid.
    """
    conninfo = settings.database_url.get_secret_value()
    secret = read_secret(key_file)
    reason: str | None
    if secret is None:
        reason = "none was kept yet" if not key_file.exists() else f"{key_file} is not a key"
    else:
        stored, now = _lookup(conninfo, secret)
        reason = refusal(stored, now)
        if stored is not None and reason is None:
            key_file.chmod(0o600)
            return DemoKey(secret, stored.id, stored.tenant_id, key_file)
    issued = create_key(
        conninfo,
        tenant_id=DEMO_TENANT,
        name=DEMO_KEY_NAME,
        scopes=DEFAULT_SCOPES,
        rate_limit=DEFAULT_RATE_LIMIT,
        expires_at=None,
    )
    write_secret(key_file, issued.secret)
    # Earlier versions kept only the key's id there and revoked that key on the next start.
    key_file.with_name("demo-key.id").unlink(missing_ok=True)
    return DemoKey(
        issued.secret, issued.stored.id, issued.stored.tenant_id, key_file, new_because=reason
    )


def refusal(stored: StoredKey | None, now: datetime) -> str | None:
    """Why the service would refuse the kept key at `now` (its own rules), or None."""
    if stored is None:
        return "the kept one is not in this database"
    try:
        authorize(stored, now=now)
    except (Forbidden, Unauthenticated) as refused:
        return f"the kept one (id {stored.id}) was refused: {str(refused).rstrip('.')}"
    return None


def read_secret(key_file: Path) -> str | None:
    """The key kept in `key_file`, or None (no file, or not a well-formed key)."""
    try:
        secret = key_file.read_text().strip()
    except FileNotFoundError:
        return None
    return secret if is_well_formed(secret) else None


def write_secret(key_file: Path, secret: str) -> None:
    """Keep `secret` in `key_file`, readable by its owner only (created 0600, renamed in)."""
    scratch = key_file.with_name(f".{key_file.name}.tmp")
    scratch.unlink(missing_ok=True)
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    scratch.replace(key_file)


_BY_HASH = """
SELECT id::text, tenant_id::text, name, scopes, rate_limit, is_active, expires_at
FROM api_keys WHERE key_hash = %s
"""


def _lookup(conninfo: str, secret: str) -> tuple[StoredKey | None, datetime]:
    """The stored key whose hash is the secret's (read only), and the database's `now()`."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(_BY_HASH, (hash_key(secret),)).fetchone()
        clock = conn.execute("SELECT now()").fetchone()
    assert clock is not None
    return (None if row is None else row_to_key(row)), clock[0]
