"""Reading the dead-letter topic: filters and bounded scans.

The record format (what a dead letter holds, written and read) is `domain.dead_letters`.

Scans read each partition from a start offset up to the high watermark seen when the scan
began, without a consumer group: they commit nothing and stop on their own.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from audit_ingest.domain.dead_letters import DeadLetter, parse_dead_letter


@dataclass(frozen=True, slots=True)
class DlqFilter:
    """Which dead letters to keep; every given criterion must hold."""

    tenant: str | None = None
    reason: str | None = None
    request_id: str | None = None
    since: datetime | None = None

    def matches(self, letter: DeadLetter) -> bool:
        if self.tenant is not None and letter.tenant_id != self.tenant:
            return False
        if self.reason is not None and letter.reason != self.reason:
            return False
        if self.request_id is not None and letter.request_id != self.request_id:
            return False
        if self.since is not None:
            moment = letter.received()
            if moment is None or moment < self.since:
                return False
        return True


@dataclass
class ScanStats:
    """What a scan read: records per partition and whether the window cut older records."""

    read: int = 0
    partitions: list[int] = field(default_factory=list)
    truncated: bool = False


class DlqReader:
    """A group-less consumer of the dead-letter topic (use as a context manager)."""

    def __init__(self, config: dict[str, Any], topic: str, *, timeout: float = 10.0) -> None:
        self.topic = topic
        self._timeout = timeout
        self._consumer = Consumer(
            {
                **config,
                "group.id": f"audit-ingest-ops-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
                "fetch.wait.max.ms": 100,
            }
        )

    def __enter__(self) -> DlqReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._consumer.close()

    def partitions(self) -> list[int]:
        metadata = self._consumer.list_topics(self.topic, timeout=self._timeout)
        described = metadata.topics.get(self.topic)
        if described is None or described.error is not None:
            raise KafkaException(
                described.error if described is not None else f"no topic {self.topic}"
            )
        return sorted(described.partitions)

    def _watermarks(self, partition: int) -> tuple[int, int]:
        low, high = self._consumer.get_watermark_offsets(
            TopicPartition(self.topic, partition), timeout=self._timeout, cached=False
        )
        return int(low), int(high)

    def _offset_at(self, partition: int, since: datetime) -> int | None:
        """The first offset at or after `since` (broker timestamps); None when there is none."""
        wanted = TopicPartition(self.topic, partition, int(since.timestamp() * 1000))
        (found,) = self._consumer.offsets_for_times([wanted], timeout=self._timeout)
        return None if found.offset < 0 else int(found.offset)

    def scan(
        self,
        *,
        tail: int | None = None,
        since: datetime | None = None,
        stats: ScanStats | None = None,
    ) -> Iterator[DeadLetter]:
        """Every record from each partition's start up to the high watermark seen now.

        :param tail: read at most the last `tail` records of each partition.
        :param since: skip records the broker stamped before this (a lower bound only: the
            caller still filters on `dlq_received_at`).
        """
        stats = stats if stats is not None else ScanStats()
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for partition in self.partitions():
            stats.partitions.append(partition)
            low, high = self._watermarks(partition)
            start = low
            if since is not None:
                at = self._offset_at(partition, since)
                start = high if at is None else max(low, at)
            if tail is not None and high - start > tail:
                start = high - tail
                stats.truncated = True
            if start < high:
                ends[partition] = high
                starts.append(TopicPartition(self.topic, partition, start))
        if not starts:
            return
        self._consumer.assign(starts)
        last_progress = time.monotonic()
        try:
            while ends:
                message = self._consumer.poll(0.2)
                if message is None:
                    # Offsets can have gaps (control records): the position says when a
                    # partition is read to its end even if its last offset holds no record.
                    for position in self._consumer.position(
                        [TopicPartition(self.topic, p) for p in ends]
                    ):
                        if position.offset >= ends[position.partition]:
                            del ends[position.partition]
                    if ends and time.monotonic() - last_progress > self._timeout:
                        raise TimeoutError(
                            f"{self.topic}: no record for {self._timeout:.0f} s before the "
                            f"end of partition(s) {sorted(ends)}"
                        )
                    continue
                if message.error() is not None:
                    continue
                last_progress = time.monotonic()
                partition, offset = message.partition() or 0, message.offset() or 0
                end = ends.get(partition)
                if end is None or offset >= end:
                    continue
                if offset >= end - 1:
                    del ends[partition]
                stats.read += 1
                yield _from_message(self.topic, message)
        finally:
            self._consumer.unassign()

    def fetch(self, positions: Sequence[tuple[int, int]]) -> dict[tuple[int, int], DeadLetter]:
        """The records at these (partition, offset) positions; absent ones are left out."""
        found: dict[tuple[int, int], DeadLetter] = {}
        known = set(self.partitions())
        for partition, offset in sorted(set(positions)):
            if partition not in known:
                continue
            low, high = self._watermarks(partition)
            if not low <= offset < high:
                continue
            self._consumer.assign([TopicPartition(self.topic, partition, offset)])
            deadline = time.monotonic() + self._timeout
            while time.monotonic() < deadline:
                message = self._consumer.poll(0.2)
                if message is None or message.error() is not None:
                    continue
                if message.partition() != partition:
                    continue
                if message.offset() == offset:
                    found[(partition, offset)] = _from_message(self.topic, message)
                break  # a later offset: this one is gone (compaction or a control record)
            self._consumer.unassign()
        return found


def _from_message(topic: str, message: Any) -> DeadLetter:
    kind, stamp = message.timestamp()
    raw_headers = message.headers() or []
    headers = [
        (str(name), value if isinstance(value, bytes) else str(value or "").encode())
        for name, value in raw_headers
    ]
    return parse_dead_letter(
        topic,
        message.partition() or 0,
        message.offset() or 0,
        stamp if kind != 0 else None,  # 0: TIMESTAMP_NOT_AVAILABLE
        headers,
        message.value() or b"",
    )


@dataclass
class Inspection:
    """Counts per (reason, tenant) over the matching records, and the latest of them."""

    matched: int
    counts: list[tuple[str, str, int]]
    latest: list[DeadLetter]


def inspect(letters: Iterable[DeadLetter], matches: DlqFilter, *, latest: int) -> Inspection:
    """One pass: count what matches, keep the `latest` newest (by received_at)."""
    counts: Counter[tuple[str, str]] = Counter()
    newest: list[tuple[tuple[float, int, int], int, DeadLetter]] = []
    sequence = 0
    for letter in letters:
        if not matches.matches(letter):
            continue
        counts[(letter.reason, letter.tenant_id)] += 1
        sequence += 1
        entry = (letter.sort_key(), sequence, letter)
        if len(newest) < latest:
            heapq.heappush(newest, entry)
        elif latest > 0:
            heapq.heappushpop(newest, entry)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return Inspection(
        matched=sum(counts.values()),
        counts=[(reason, tenant, count) for (reason, tenant), count in ordered],
        latest=[letter for _, _, letter in sorted(newest, reverse=True)],
    )


def select_oldest(
    letters: Iterable[DeadLetter], matches: DlqFilter, *, limit: int
) -> tuple[list[DeadLetter], int]:
    """The `limit` oldest matching records in replay order, and how many matched in all."""
    matched = 0

    def matching() -> Iterator[DeadLetter]:
        nonlocal matched
        for letter in letters:
            if matches.matches(letter):
                matched += 1
                yield letter

    chosen = heapq.nsmallest(limit, matching(), key=DeadLetter.sort_key)  # bounded memory
    return chosen, matched


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    widths = [len(title) for title in header]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    lines = []
    for row in (header, *rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return lines


def letter_row(letter: DeadLetter) -> list[str]:
    return [
        letter.position,
        letter.received_at or "-",
        letter.tenant_id or "-",
        letter.reason or "-",
        letter.first_error,
        letter.request_id or "-",
    ]


LETTER_HEADER = ("position", "received_at", "tenant", "reason", "first error", "request id")


def render_inspection(
    inspection: Inspection, *, topic: str, stats: ScanStats, show_values: bool
) -> list[str]:
    """The `dlq inspect` report: counts per (reason, tenant), then the latest records."""
    window = "the last records of each partition" if stats.truncated else "every record"
    lines = [
        f"{topic}: {inspection.matched} matching record(s) of {stats.read} read "
        f"({window}; partitions {', '.join(map(str, stats.partitions)) or 'none'})"
    ]
    if not inspection.matched:
        return lines
    lines.append("")
    lines += render_table(
        ("reason", "tenant", "records"),
        [(reason or "-", tenant or "-", str(count)) for reason, tenant, count in inspection.counts],
    )
    lines.append("")
    lines.append(f"latest {len(inspection.latest)} (newest first):")
    rows = [letter_row(letter) for letter in inspection.latest]
    table = render_table(LETTER_HEADER, rows)
    if not show_values:
        return [*lines, *table]
    lines.append(table[0])
    for letter, line in zip(inspection.latest, table[1:], strict=True):
        lines.append(line)
        lines.append("    value: " + letter.value.decode("utf-8", "replace"))
    return lines
