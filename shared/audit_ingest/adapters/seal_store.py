"""Reading the seals topic and ranges of the events topic (read_committed, no consumer group).

The seal of events partition p is stored in seals partition p: a partition's last seal is
then the last committed record of one partition, found without reading the whole topic.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from audit_ingest.adapters.kafka_reader import StoredRecord
from audit_ingest.domain.checkpoint import SealRecord
from audit_ingest.domain.seal_errors import SealError
from audit_ingest.domain.seal_leaf import event_id_of


def _consumer(connection: dict[str, Any]) -> Consumer:
    return Consumer(
        {
            **connection,
            "group.id": f"audit-ingest-seals-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            # Only committed seals count: an aborted transaction's seal never happened.
            "isolation.level": "read_committed",
        }
    )


def partitions(connection: dict[str, Any], topic: str) -> list[int]:
    with closing(_consumer(connection)) as consumer:
        metadata = consumer.list_topics(topic, timeout=10)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise SealError("topic", f"{topic} does not exist")
        return sorted(found.partitions)


def watermarks(connection: dict[str, Any], topic: str, partition: int) -> tuple[int, int]:
    with closing(_consumer(connection)) as consumer:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=10, cached=False
        )
        return int(low), int(high)


def read_range(
    connection: dict[str, Any],
    topic: str,
    partition: int,
    start: int,
    stop: int | None = None,
    *,
    timeout: float = 30.0,
) -> Iterator[StoredRecord]:
    """Committed records with start <= offset < stop (default: the end seen now).

    Waits up to `timeout` for an open transaction in the range to end (read_committed
    reads no further until it does); raises TimeoutError after that.
    """
    consumer = _consumer(connection)
    try:
        tp = TopicPartition(topic, partition)
        low, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
        stop = int(high) if stop is None else min(stop, int(high))
        start = max(start, int(low))
        if start >= stop:
            return
        consumer.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout
        while True:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                offset = message.offset() or 0
                if offset >= stop:
                    return
                yield StoredRecord(partition, offset, message.key(), (), message.value() or b"")
                if offset >= stop - 1:
                    return
                continue
            # Transaction markers hold offsets without records: the position tells the end.
            (position,) = consumer.position([tp])
            if position.offset >= stop:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}[{partition}] not read to offset {stop} in {timeout} s")
    finally:
        consumer.close()


def read_seals(
    connection: dict[str, Any],
    seals_topic: str,
    topic: str,
    partition: int,
    *,
    timeout: float = 30.0,
) -> list[SealRecord]:
    """Every committed seal of `topic`'s `partition`, in stored order."""
    seals = []
    for record in read_range(connection, seals_topic, partition, 0, timeout=timeout):
        seal = SealRecord.decode(record.value)
        if (seal.checkpoint.topic, seal.checkpoint.partition) == (topic, partition):
            seals.append(seal)
    return seals


def last_seal(
    connection: dict[str, Any], seals_topic: str, topic: str, partition: int, *, timeout: float
) -> SealRecord | None:
    """The partition's last committed seal, reading back from the end in growing windows."""
    low, high = watermarks(connection, seals_topic, partition)
    window = 16
    while True:
        start = max(low, high - window)
        found = None
        for record in read_range(connection, seals_topic, partition, start, high, timeout=timeout):
            seal = SealRecord.decode(record.value)
            if (seal.checkpoint.topic, seal.checkpoint.partition) == (topic, partition):
                found = seal
        if found is not None or start <= low:
            return found
        window *= 8


def find_event(
    connection: dict[str, Any], topic: str, event_id: str, among: list[int]
) -> StoredRecord | None:
    """The record whose value carries `event_id` (a scan of the given partitions)."""
    needle = event_id.encode()
    for partition in among:
        for record in read_range(connection, topic, partition, 0):
            if needle in record.value and event_id_of(record.value) == event_id:
                return record
    return None
