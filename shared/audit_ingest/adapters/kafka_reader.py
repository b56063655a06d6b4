"""Reading records back, for operators (`audit-ingest events tail`).

Without `from_beginning`, records are yielded as they arrive (new ones only). With it, the
records stored when reading starts come first, oldest first by record timestamp across every
partition: each partition is read in offset order and the partitions' next records are merged
(a k-way merge), so a record is yielded only once every partition that still has records
from before the start has shown its next one. At most `limit` records of a partition are
held. Within a partition, offset order is kept even where a timestamp goes back (a
producer's clock stepping back). Records stored after the start follow, as they arrive.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, TopicPartition


@dataclass(frozen=True, slots=True)
class StoredRecord:
    partition: int
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    value: bytes
    timestamp_ms: int | None = None  # the record's timestamp (CreateTime or LogAppendTime)

    def order(self) -> tuple[int, int, int]:
        """Oldest first: timestamp (none sorts first), then partition and offset."""
        stamp = -1 if self.timestamp_ms is None else self.timestamp_ms
        return (stamp, self.partition, self.offset)


class OldestFirst:
    """The k-way merge of partitions read in offset order, oldest timestamp first.

    `add` a partition's records in offset order and `finish` it when it has no more; `ready`
    yields what can be told oldest: the smallest next record, while every unfinished
    partition has shown its next one. At most `limit` records come out in all, so a
    partition never needs more than that many held (`wants` says when it has enough).
    """

    def __init__(self, partitions: Iterable[int], limit: int) -> None:
        self._held: dict[int, deque[StoredRecord]] = {p: deque() for p in partitions}
        self._open = set(self._held)
        self._remaining = limit
        self._heads: list[tuple[tuple[int, int, int], StoredRecord]] = []
        self._waiting = len(self._open)  # open partitions holding nothing: they block

    @property
    def remaining(self) -> int:
        return self._remaining

    @property
    def exhausted(self) -> bool:
        """Nothing more will come out: `limit` reached, or every partition finished and
        yielded."""
        return self._remaining == 0 or (not self._open and not self._heads)

    def wants(self, partition: int) -> bool:
        """Whether the partition's next record could still come out."""
        return partition in self._open and len(self._held[partition]) < self._remaining

    def add(self, record: StoredRecord) -> None:
        if not self.wants(record.partition):
            return
        held = self._held[record.partition]
        held.append(record)
        if len(held) == 1:
            heapq.heappush(self._heads, (record.order(), record))
            self._waiting -= 1

    def finish(self, partition: int) -> None:
        if partition in self._open:
            self._open.discard(partition)
            if not self._held[partition]:
                self._waiting -= 1

    def ready(self, *, flush: bool = False) -> Iterator[StoredRecord]:
        """The records that are known to be the oldest left; with `flush`, all held ones
        (the unfinished partitions are given up on)."""
        while self._remaining > 0 and self._heads and (flush or self._waiting == 0):
            _, record = heapq.heappop(self._heads)
            held = self._held[record.partition]
            held.popleft()
            if held:
                heapq.heappush(self._heads, (held[0].order(), held[0]))
            elif record.partition in self._open:
                self._waiting += 1
            self._remaining -= 1
            yield record


def read_records(
    connection: dict[str, Any],
    topic: str,
    *,
    from_beginning: bool,
    limit: int,
    idle_seconds: float,
) -> Generator[StoredRecord, None, None]:
    """Yield up to `limit` records; stop after `idle_seconds` without a new one (a generator:
    `close()` it to release its consumer before then).

    With `from_beginning`, the records stored now come first, oldest first by timestamp
    across partitions (see the module's docstring). Reads every partition without a consumer
    group, so it commits nothing and disturbs no one.
    """
    consumer = _consumer(connection)
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        follow_from = {p: OFFSET_END for p in partitions}
        seen = 0
        if from_beginning:
            stored = _stored_now(connection, topic, partitions, limit, idle_seconds, follow_from)
            with closing(stored):
                for record in stored:
                    seen += 1
                    yield record
        if seen >= limit or not follow_from:
            return
        consumer.assign([TopicPartition(topic, p, offset) for p, offset in follow_from.items()])
        last = time.monotonic()
        while seen < limit and time.monotonic() - last < idle_seconds:
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            seen, last = seen + 1, time.monotonic()
            yield _record(message)
    finally:
        consumer.close()


def _consumer(connection: dict[str, Any]) -> Consumer:
    return Consumer(
        {
            **connection,
            "group.id": f"audit-ingest-tail-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )


def _stored_now(
    connection: dict[str, Any],
    topic: str,
    partitions: list[int],
    limit: int,
    idle_seconds: float,
    follow_from: dict[int, int],
) -> Generator[StoredRecord, None, None]:
    """The records below each partition's high watermark seen now, oldest first.

    Sets `follow_from` to where reading new records continues afterwards (each partition's
    end), or empties it when the merge gave up (`idle_seconds` without a record before every
    partition reached its end), since what would follow is then unknown.
    """
    consumer = _consumer(connection)
    try:
        ends: dict[int, int] = {}
        assignment: list[TopicPartition] = []
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10, cached=False
            )
            follow_from[partition] = int(high)
            if high > low:
                ends[partition] = int(high)
                assignment.append(TopicPartition(topic, partition, int(low)))
        if not assignment:
            return
        merge = OldestFirst(ends, limit)
        consumer.assign(assignment)
        paused: set[int] = set()
        last = time.monotonic()
        while not merge.exhausted:
            yield from merge.ready()
            if merge.exhausted:
                return
            message = consumer.poll(0.2)
            if message is None:
                # Offsets can have gaps (transaction markers): the position tells when a
                # partition is read to its end even if its last offset holds no record.
                for position in consumer.position([TopicPartition(topic, p) for p in ends]):
                    if position.offset >= ends[position.partition]:
                        merge.finish(position.partition)
                if time.monotonic() - last >= idle_seconds:
                    yield from merge.ready(flush=True)
                    follow_from.clear()
                    return
                continue
            if message.error() is not None:
                continue
            last = time.monotonic()
            record = _record(message)
            end = ends.get(record.partition)
            if end is None or record.offset >= end:
                continue  # stored after the start: read when following
            merge.add(record)
            if record.offset >= end - 1:
                merge.finish(record.partition)
            if not merge.wants(record.partition) and record.partition not in paused:
                # Read to its end, or holding all it could still contribute.
                paused.add(record.partition)
                consumer.pause([TopicPartition(topic, record.partition)])
    finally:
        consumer.close()


def _record(message: Any) -> StoredRecord:
    kind, stamp = message.timestamp()
    return StoredRecord(
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        headers=_headers(message.headers()),
        value=message.value() or b"",
        timestamp_ms=int(stamp) if kind != 0 else None,  # 0: TIMESTAMP_NOT_AVAILABLE
    )


def _headers(raw: object) -> tuple[tuple[str, bytes], ...]:
    pairs = raw.items() if isinstance(raw, dict) else (raw or [])
    assert isinstance(pairs, Iterable)
    return tuple(
        (str(name), value if isinstance(value, bytes) else str(value or "").encode())
        for name, value in pairs
    )
