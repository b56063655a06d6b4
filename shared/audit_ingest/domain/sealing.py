"""Sealing one partition: records in offset order in, signed seal records out (pure).

`PartitionSealer` holds what the last committed checkpoint says (where the next range
starts, the chain head, its hash) and the pending range. `cut` builds and signs the next
seal and holds it in flight; the caller publishes it in a Kafka transaction and then calls
`commit` (it is the new base) or `rollback` (the pending range is kept, as if never cut).
Ranges tile the partition: a range starts right after the previous one's last offset, and
offsets inside it that hold no record are listed as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from audit_ingest.domain import merkle
from audit_ingest.domain.checkpoint import Checkpoint, SealRecord
from audit_ingest.domain.seal_keys import SigningKey
from audit_ingest.domain.seal_leaf import GENESIS, chain_step, leaf_hash


@dataclass(frozen=True, slots=True)
class Base:
    """Where the next range starts: from the partition's last committed checkpoint."""

    next_offset: int | None  # None: nothing sealed yet, start at the first record seen
    chain_head: bytes
    prev_hash: bytes | None
    sequence: int

    @classmethod
    def after(cls, last: Checkpoint | None) -> Base:
        if last is None:
            return cls(None, GENESIS, None, 0)
        return cls(last.last_offset + 1, last.chain_head, last.digest(), last.sequence + 1)


class PartitionSealer:
    def __init__(self, topic: str, partition: int, last: Checkpoint | None) -> None:
        self.topic = topic
        self.partition = partition
        self.base = Base.after(last)
        self._leaves: list[bytes] = []
        self._offsets: list[int] = []
        self._head = self.base.chain_head
        self.pending_since: float | None = None
        self._in_flight: SealRecord | None = None

    @property
    def pending(self) -> int:
        return len(self._leaves)

    @property
    def next_offset(self) -> int | None:
        """The offset the next record should have (None: any, nothing seen yet)."""
        if self._offsets:
            return self._offsets[-1] + 1
        return self.base.next_offset

    def add(self, offset: int, value: bytes, now: float) -> bool:
        """Hash one record into the pending range; False (ignored) when its offset is not
        after the last one seen (a redelivery after a seek)."""
        expected = self.next_offset
        if expected is not None and offset < expected:
            return False
        leaf = leaf_hash(value)
        self._head = chain_step(self._head, leaf)
        self._leaves.append(leaf)
        self._offsets.append(offset)
        if self.pending_since is None:
            self.pending_since = now
        return True

    def due(self, now: float, max_records: int, max_seconds: float) -> bool:
        if not self._leaves or self._in_flight is not None:
            return False
        assert self.pending_since is not None
        return len(self._leaves) >= max_records or now - self.pending_since >= max_seconds

    def cut(self, key: SigningKey, sealed_at: str) -> SealRecord:
        """Sign the pending range (at most everything pending) and hold it in flight."""
        if not self._leaves or self._in_flight is not None:
            raise RuntimeError("nothing to cut, or a seal is already in flight")
        first = self.base.next_offset if self.base.next_offset is not None else self._offsets[0]
        checkpoint = Checkpoint(
            topic=self.topic,
            partition=self.partition,
            sequence=self.base.sequence,
            first_offset=first,
            last_offset=self._offsets[-1],
            count=len(self._leaves),
            skipped=skipped_ranges(first, self._offsets),
            chain_start=self.base.chain_head,
            chain_head=self._head,
            merkle_root=merkle.root(self._leaves),
            prev_hash=self.base.prev_hash,
            sealed_at=sealed_at,
            key_id=key.key_id,
        )
        record = SealRecord(checkpoint, key.sign(checkpoint.signed_bytes()), tuple(self._leaves))
        self._in_flight = record
        return record

    def commit(self) -> SealRecord:
        """The in-flight seal is stored: it becomes the base, the pending range is empty."""
        record = self._in_flight
        if record is None:
            raise RuntimeError("no seal in flight")
        self.base = Base.after(record.checkpoint)
        self._leaves, self._offsets = [], []
        self._head = self.base.chain_head
        self.pending_since = None
        self._in_flight = None
        return record

    def rollback(self) -> None:
        """The in-flight seal was not stored: keep the range pending, to be cut again."""
        self._in_flight = None


def skipped_ranges(first: int, offsets: list[int]) -> tuple[tuple[int, int], ...]:
    """The [from, to] runs of offsets from `first` to the last one that hold no record."""
    gaps: list[tuple[int, int]] = []
    at = first
    for offset in offsets:
        if offset > at:
            gaps.append((at, offset - 1))
        at = offset + 1
    return tuple(gaps)
