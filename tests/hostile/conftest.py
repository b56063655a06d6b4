"""Fixtures of the hostile tier: the e2e function processes, their own topics, DEBUG logs.

The stack (`tests.stack`, registered by tests/conftest.py) and the process helpers of the e2e
tier are reused; the ingest functions here run with `LOG_LEVEL=DEBUG` (so a leaked key would
show in their logs) and write to topics of their own, so that everything in those topics came
from this tier's traffic and can be accounted for. Every API key a hostile test issues is
recorded (`issued_secrets`) for the secret-hygiene test to search for.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from audit_ingest.adapters.kafka_admin import TopicSpec, create_topics
from audit_ingest.adapters.key_admin import IssuedKey, create_key
from audit_ingest.settings import Settings

# Fixtures of the e2e tier, imported by name so pytest registers them for this folder too.
from tests.e2e.conftest import (
    FunctionProcess,
    function_env,  # noqa: F401
    log_dir,  # noqa: F401
    start_function,
    stop_function,
)
from tests.stack import KeyFactory

HOSTILE_TOPIC = "audit.events.hostile.v1"
HOSTILE_DLQ_TOPIC = "audit.events.hostile.dlq.v1"
# Every hostile request must be answered within this bound (seconds), whatever its body.
ANSWER_WITHIN = 5.0

# Keys issued by hostile tests in this session, and keys presented that were never stored
# (unknown, malformed): what the secret-hygiene test searches for.
_ISSUED: list[IssuedKey] = []
_PRESENTED: set[str] = set()


def record_issued(issued: IssuedKey) -> None:
    _ISSUED.append(issued)


def record_presented(key: str) -> None:
    _PRESENTED.add(key)


def presented_keys() -> set[str]:
    return _PRESENTED | {issued.secret for issued in _ISSUED}


@dataclass(frozen=True)
class HostileFunctions:
    single: FunctionProcess
    batch: FunctionProcess
    topic: str
    dlq_topic: str

    @property
    def single_url(self) -> str:
        return self.single.url

    @property
    def batch_url(self) -> str:
        return self.batch.url

    def url_for(self, path: str) -> str:
        """The base URL of the function serving `path` (as APISIX routes it)."""
        return self.batch.url if path.rstrip("/").endswith("/batch") else self.single.url


@pytest.fixture(scope="session")
def hostile_env(function_env: dict[str, str], settings: Settings) -> dict[str, str]:  # noqa: F811
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
def hostile(hostile_env: dict[str, str], log_dir: Path) -> Iterator[HostileFunctions]:  # noqa: F811
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
