"""Fixtures of the hostile tier: the e2e function processes, their own topics, DEBUG logs.

The stack (`tests.stack`, registered by tests/conftest.py) and the process helpers
(`tests.functions`) are reused; the ingest functions here run with `LOG_LEVEL=DEBUG` (so a
leaked key would show in their logs) and write to topics of their own, so that everything in
those topics came from this tier's traffic and can be accounted for. Every API key a hostile
test issues is recorded (`tests.hostile.tier`) for the secret-hygiene test to search for.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audit_ingest.adapters.kafka_admin import TopicSpec, create_topics
from audit_ingest.adapters.key_admin import IssuedKey, create_key
from audit_ingest.settings import Settings
from tests.functions import (
    start_function,
    stop_function,
)
from tests.hostile.tier import (
    HOSTILE_DLQ_TOPIC,
    HOSTILE_TOPIC,
    HostileFunctions,
    record_issued,
)
from tests.stack import KeyFactory

# The e2e tier's session fixtures, for this folder (helpers: tests/functions.py).


@pytest.fixture(scope="session")
def hostile_env(function_env: dict[str, str], settings: Settings) -> dict[str, str]:
    create_topics(
        settings.kafka_bootstrap_servers,
        [
            TopicSpec(name, 3, 1, {"min.insync.replicas": "1"})
            for name in (HOSTILE_TOPIC, HOSTILE_DLQ_TOPIC)
        ],
    )
    return {
        **function_env,
        "LOG_LEVEL": "DEBUG",
        "KAFKA_TOPIC": HOSTILE_TOPIC,
        "KAFKA_DLQ_TOPIC": HOSTILE_DLQ_TOPIC,
    }


@pytest.fixture(scope="session")
def hostile(hostile_env: dict[str, str], log_dir: Path) -> Iterator[HostileFunctions]:
    folder = log_dir / "hostile"
    folder.mkdir(exist_ok=True)
    single = start_function("ingest_event", {**hostile_env, "K_SERVICE": "ingest-event"}, folder)
    try:
        batch = start_function("ingest_batch", {**hostile_env, "K_SERVICE": "ingest-batch"}, folder)
    except BaseException:
        stop_function(single)
        raise
    yield HostileFunctions(single, batch, HOSTILE_TOPIC, HOSTILE_DLQ_TOPIC)
    for function in (single, batch):
        stop_function(function)


@pytest.fixture(scope="session")
def issue_session_key(settings: Settings) -> KeyFactory:
    """A key factory for module- and session-scoped fixtures, recording what it issues."""

    def make(**options: Any) -> IssuedKey:
        issued = create_key(
            settings.database_url.get_secret_value(),
            tenant_id=options.get("tenant_id", uuid.uuid4()),
            name=options.get("name", "hostile"),
            scopes=options.get("scopes", ("events:write",)),
            rate_limit=options.get("rate_limit", 10_000),
            expires_at=options.get("expires_at"),
        )
        record_issued(issued)
        return issued

    return make


@pytest.fixture
def issue_key(issue_key: KeyFactory) -> KeyFactory:
    """The stack's key factory, recording every key it issues (for the hygiene search)."""

    def make(**options: Any) -> IssuedKey:
        issued = issue_key(**options)
        record_issued(issued)
        return issued

    return make
