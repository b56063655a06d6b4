"""Session fixtures for the tiers that need real services (integration, e2e, fault).

The stack starts only when a test asks for it: unit tests never do. It runs in a fresh
temporary folder on free ports, so a `make run` on the same machine is left alone; a service
named by DATABASE_URL / REDIS_URL / KAFKA_BOOTSTRAP_SERVERS is used instead of a local one.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from devstack import LocalStack, StackPorts
from devstack.provision import provision, stack_settings

from audit_ingest.adapters.key_admin import IssuedKey, create_key
from audit_ingest.settings import Settings

REPO = Path(__file__).resolve().parent.parent
KAFKA_LIBS = REPO / ".dev" / "kafka-libs"


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    # Not pytest's tmp_path: its parent is 0700, and PostgreSQL runs as an unprivileged user
    # when the tests run as root, so it must be able to enter the folder.
    root = Path(tempfile.mkdtemp(prefix="audit-ingest-stack-"))
    root.chmod(0o755)
    local = LocalStack(root=root, ports=StackPorts.free(), kafka_libs=KAFKA_LIBS)
    try:
        local.start()
        yield local
    finally:
        local.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_env(stack: LocalStack) -> dict[str, str]:
    return dict(stack.env)


@pytest.fixture(scope="session")
def settings(stack_env: dict[str, str]) -> Settings:
    ready = stack_settings(stack_env)
    provision(ready)
    return ready


KeyFactory = Callable[..., IssuedKey]


@pytest.fixture
def issue_key(settings: Settings) -> KeyFactory:
    """Create a real key (for a new tenant unless one is given)."""

    def make(**options: Any) -> IssuedKey:
        return create_key(
            settings.database_url.get_secret_value(),
            tenant_id=options.get("tenant_id", uuid.uuid4()),
            name=options.get("name", "test"),
            scopes=options.get("scopes", ("events:write",)),
            rate_limit=options.get("rate_limit", 10_000),
            expires_at=options.get("expires_at"),
        )

    return make


class TopicReader:
    """Reads a topic from the beginning of every partition (no consumer group)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"test-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=10)
        partitions = metadata.topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        self.messages: list[Message] = []

    def read_until(
        self, predicate: Callable[[list[Message]], bool], timeout: float = 15.0
    ) -> list[Message]:
        """Poll until `predicate(all messages so far)` holds or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not predicate(self.messages) and time.monotonic() < deadline:
            message = self._consumer.poll(0.2)
            if message is not None and message.error() is None:
                self.messages.append(message)
        return self.messages

    def drain(self, quiet: float = 1.5) -> list[Message]:
        """Everything currently in the topic: polls until nothing new for `quiet` seconds."""
        last = time.monotonic()
        while time.monotonic() - last < quiet:
            message = self._consumer.poll(0.2)
            if message is not None and message.error() is None:
                self.messages.append(message)
                last = time.monotonic()
        return self.messages

    def close(self) -> None:
        self._consumer.close()


@pytest.fixture
def read_topic(settings: Settings) -> Iterator[Callable[[str], TopicReader]]:
    readers: list[TopicReader] = []

    def open_reader(topic: str) -> TopicReader:
        reader = TopicReader(settings.kafka_bootstrap_servers, topic)
        readers.append(reader)
        return reader

    yield open_reader
    for reader in readers:
        reader.close()
