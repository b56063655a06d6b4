"""Reading records back, for operators (`audit-ingest events tail`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition


@dataclass(frozen=True, slots=True)
class StoredRecord:
    partition: int
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    value: bytes


def read_records(
    connection: dict[str, Any],
    topic: str,
    *,
    from_beginning: bool,
    limit: int,
    idle_seconds: float,
) -> Iterator[StoredRecord]:
    """Yield up to `limit` records; stop after `idle_seconds` without a new one.

    Reads every partition without a consumer group, so it commits nothing and disturbs no one.
    """
    consumer = Consumer(
        {
            **connection,
            "group.id": f"audit-ingest-tail-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = metadata.topics[topic].partitions
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in partitions])
        seen, last = 0, time.monotonic()
        while seen < limit and time.monotonic() - last < idle_seconds:
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            seen, last = seen + 1, time.monotonic()
            yield StoredRecord(
                partition=message.partition() or 0,
                offset=message.offset() or 0,
                key=message.key(),
                headers=_headers(message.headers()),
                value=message.value() or b"",
            )
    finally:
        consumer.close()


def _headers(raw: object) -> tuple[tuple[str, bytes], ...]:
    pairs = raw.items() if isinstance(raw, dict) else (raw or [])
    assert isinstance(pairs, Iterable)
    return tuple(
        (str(name), value if isinstance(value, bytes) else str(value or "").encode())
        for name, value in pairs
    )
