"""Make a running stack ready for the service: schema, topics, keys."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from audit_ingest.adapters.kafka_admin import TopicSpec, create_topics
from audit_ingest.adapters.key_admin import IssuedKey, create_key, revoke_key
from audit_ingest.adapters.migrations import migrate
from audit_ingest.settings import Settings

DEMO_TENANT = uuid.UUID("11111111-1111-4111-8111-111111111111")


def stack_settings(env: Mapping[str, str]) -> Settings:
    """Settings for a stack's addresses (`LocalStack.env`), over the process environment."""
    values: dict[str, Any] = {name.lower(): value for name, value in env.items()}
    return Settings(**values)


def provision(settings: Settings, *, partitions: int = 3) -> None:
    """Apply migrations and create both topics (replication 1: a single local broker)."""
    migrate(settings.database_url.get_secret_value())
    config = {"min.insync.replicas": "1", "unclean.leader.election.enable": "false"}
    create_topics(
        settings.kafka_bootstrap_servers,
        [
            TopicSpec(settings.kafka_topic, partitions, 1, config),
            TopicSpec(settings.kafka_dlq_topic, partitions, 1, config),
        ],
    )


def rotate_demo_key(settings: Settings, id_file: Path) -> IssuedKey:
    """A fresh demo key for this run; the previous run's demo key is revoked.

    Keys are stored only as hashes, so an old key cannot be shown again: each `make run`
    issues a new one and keeps only its id (never the key) in `id_file`.
    """
    conninfo = settings.database_url.get_secret_value()
    if id_file.exists():
        previous = id_file.read_text().strip()
        if previous:
            revoke_key(conninfo, uuid.UUID(previous))
    issued = create_key(
        conninfo,
        tenant_id=DEMO_TENANT,
        name="make-run demo",
        scopes=("events:write",),
        rate_limit=10_000,
        expires_at=None,
    )
    id_file.write_text(issued.stored.id + "\n")
    return issued
