"""`events tail --from-beginning`'s merge of partitions, oldest record first (pure)."""

from __future__ import annotations

import pytest

from audit_ingest.adapters.kafka_reader import OldestFirst, StoredRecord

pytestmark = pytest.mark.unit


def rec(partition: int, offset: int, stamp: int | None) -> StoredRecord:
    return StoredRecord(partition, offset, None, (), b"", timestamp_ms=stamp)


def positions(records: list[StoredRecord]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in records]


def test_nothing_comes_out_until_every_open_partition_has_shown_its_next_record() -> None:
    merge = OldestFirst([0, 1, 2], limit=10)
    merge.add(rec(0, 0, 300))
    merge.add(rec(1, 0, 200))
    assert list(merge.ready()) == []  # partition 2 could hold something older
    merge.add(rec(2, 0, 100))
    assert positions(list(merge.ready())) == [(2, 0)]  # partition 2 must show its next one
    merge.add(rec(2, 1, 400))
    assert positions(list(merge.ready())) == [(1, 0)]
    merge.finish(1)
    assert positions(list(merge.ready())) == [(0, 0)]
    merge.finish(0)
    merge.finish(2)
    assert positions(list(merge.ready())) == [(2, 1)]
    assert merge.exhausted


def test_interleaved_partitions_come_out_by_timestamp() -> None:
    merge = OldestFirst([0, 1, 2], limit=10)
    by_partition = {
        0: [rec(0, 0, 30), rec(0, 1, 60)],
        1: [rec(1, 0, 20), rec(1, 1, 50)],
        2: [rec(2, 0, 10), rec(2, 1, 40)],
    }
    out: list[StoredRecord] = []
    for partition, records in by_partition.items():
        for record in records:
            merge.add(record)
        merge.finish(partition)
        out += merge.ready()
    assert [r.timestamp_ms for r in out] == [10, 20, 30, 40, 50, 60]


def test_limit_bounds_what_is_held_and_what_comes_out() -> None:
    merge = OldestFirst([0, 1], limit=2)
    merge.add(rec(0, 0, 5))
    merge.add(rec(0, 1, 6))
    assert not merge.wants(0)  # two held: all the limit could take from it
    merge.add(rec(0, 2, 7))  # ignored, not held
    assert merge.wants(1)
    merge.add(rec(1, 0, 1))
    assert positions(list(merge.ready())) == [(1, 0)]  # partition 1 may hold an older one
    merge.add(rec(1, 1, 8))
    assert not merge.wants(1)  # one held: all the one left could take from it
    assert positions(list(merge.ready())) == [(0, 0)]
    assert merge.exhausted and merge.remaining == 0


def test_a_partition_with_nothing_to_read_does_not_block() -> None:
    merge = OldestFirst([0, 1], limit=5)
    merge.finish(1)
    merge.add(rec(0, 0, 9))
    merge.finish(0)
    assert positions(list(merge.ready())) == [(0, 0)]
    assert merge.exhausted


def test_flush_gives_up_on_partitions_that_never_answered() -> None:
    merge = OldestFirst([0, 1], limit=5)
    merge.add(rec(0, 0, 9))
    merge.add(rec(0, 1, 3))  # a clock stepped back: offset order is kept within a partition
    assert list(merge.ready()) == []
    assert positions(list(merge.ready(flush=True))) == [(0, 0), (0, 1)]


def test_records_without_a_timestamp_sort_first_then_by_position() -> None:
    merge = OldestFirst([0, 1], limit=5)
    merge.add(rec(1, 0, None))
    merge.add(rec(0, 0, 1))
    merge.finish(0)
    merge.finish(1)
    assert positions(list(merge.ready())) == [(1, 0), (0, 0)]
