"""Checking one partition's records (from the topic or an exported copy) against its seals.

What is checked, and the reasons a finding gives:
- each seal: its signature under a trusted key (`bad_signature`), its leaves against its
  signed root and chain head (`bad_seal`), and its link to the seal before it: prev_hash,
  sequence, chain and offsets continue without a gap or overlap (`broken_chain`);
- the records, in the order given, against the sealed leaves of the offsets they should
  hold: the first place they differ is `changed` (content differs), `missing` (the sealed
  record is absent, later ones follow), `reordered` (it appears, elsewhere) or `unexpected`
  (a record the seals do not have there).
Only the first finding (the lowest offset) is reported: everything after it is suspect.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from audit_ingest.domain.checkpoint import SealRecord
from audit_ingest.domain.seal_keys import KeyRing
from audit_ingest.domain.seal_leaf import leaf_hash

Reason = Literal[
    "changed", "missing", "reordered", "unexpected", "bad_signature", "bad_seal", "broken_chain"
]


@dataclass(frozen=True, slots=True)
class RecordCopy:
    """A record as the verifier got it: the offset it claims and its value."""

    offset: int
    value: bytes


@dataclass(frozen=True, slots=True)
class Finding:
    partition: int
    offset: int
    reason: Reason
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(slots=True)
class PartitionReport:
    partition: int
    seals: int = 0
    records: int = 0
    checked_from: int | None = None
    checked_to: int | None = None
    unsealed: int = 0  # records after the last seal (or before the first): not verifiable yet
    finding: Finding | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.finding is None

    def note(self, finding: Finding) -> None:
        if self.finding is None or finding.offset < self.finding.offset:
            self.finding = finding


def check_seals(partition: int, seals: Sequence[SealRecord], keys: KeyRing) -> list[Finding]:
    """Each seal's signature and consistency, and the links between consecutive seals."""
    found: list[Finding] = []
    previous: SealRecord | None = None
    for seal in seals:
        cp = seal.checkpoint
        problem = keys.verify(cp.key_id, seal.signature, cp.signed_bytes())
        if problem is not None:
            found.append(Finding(partition, cp.first_offset, "bad_signature", problem))
        elif (inconsistent := seal.consistency()) is not None:
            found.append(Finding(partition, cp.first_offset, "bad_seal", inconsistent))
        if previous is not None:
            link = _link(previous, seal)
            if link is not None:
                at = min(cp.first_offset, previous.checkpoint.last_offset + 1)
                found.append(Finding(partition, at, "broken_chain", link))
        elif cp.sequence == 0 and cp.prev_hash is not None:
            found.append(
                Finding(partition, cp.first_offset, "broken_chain", "first seal names a prev")
            )
        previous = seal
    return found


def _link(previous: SealRecord, seal: SealRecord) -> str | None:
    before, cp = previous.checkpoint, seal.checkpoint
    name = f"seal {cp.sequence} (offsets {cp.first_offset}-{cp.last_offset})"
    if cp.sequence != before.sequence + 1:
        return f"{name} follows seal {before.sequence}: a seal is missing or repeated"
    if cp.prev_hash != before.digest():
        return f"{name} does not name seal {before.sequence}'s hash as prev_hash"
    if cp.first_offset != before.last_offset + 1:
        return f"{name} does not start right after offset {before.last_offset}"
    if cp.chain_start != before.chain_head:
        return f"{name} does not continue seal {before.sequence}'s chain"
    return None


def verify_partition(
    partition: int,
    seals: Sequence[SealRecord],
    records: Sequence[RecordCopy],
    keys: KeyRing,
    *,
    start: int | None = None,
    end: int | None = None,
) -> PartitionReport:
    """Check `records` (in the order given) against `seals` (in stored order).

    The records are expected to be every record of the partition from `start` to `end`
    (default: the lowest and highest offset among them), clipped to what the seals cover;
    records outside the sealed offsets are counted as `unsealed`, not judged.
    """
    report = PartitionReport(partition, seals=len(seals))
    for finding in check_seals(partition, seals, keys):
        report.note(finding)
    if not seals:
        report.unsealed = len(records)
        return report
    sealed_from = seals[0].checkpoint.first_offset
    sealed_to = seals[-1].checkpoint.last_offset
    if not records and (start is None or end is None):
        return report
    lo = start if start is not None else min(r.offset for r in records)
    hi = end if end is not None else max(r.offset for r in records)
    lo, hi = max(lo, sealed_from), min(hi, sealed_to)
    if lo > hi:
        report.unsealed = len(records)
        return report
    report.checked_from, report.checked_to = lo, hi
    expected = _expected(seals, lo, hi)
    actual = [(r.offset, leaf_hash(r.value)) for r in records if lo <= r.offset <= hi]
    report.records = len(actual)
    report.unsealed = len(records) - len(actual)
    difference = _first_difference(partition, expected, actual)
    if difference is not None:
        report.note(difference)
    return report


def _expected(seals: Sequence[SealRecord], lo: int, hi: int) -> list[tuple[int, bytes]]:
    expected: list[tuple[int, bytes]] = []
    for seal in seals:
        cp = seal.checkpoint
        if cp.last_offset < lo or cp.first_offset > hi:
            continue
        for offset, leaf in zip(cp.offsets(), seal.leaves, strict=True):
            if lo <= offset <= hi:
                expected.append((offset, leaf))
    return expected


def _first_difference(
    partition: int, expected: list[tuple[int, bytes]], actual: list[tuple[int, bytes]]
) -> Finding | None:
    for i, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want != got:
            return _classify(partition, expected, actual, i)
    if len(actual) < len(expected):
        offset = expected[len(actual)][0]
        return Finding(
            partition, offset, "missing", f"the records from offset {offset} on are absent"
        )
    if len(actual) > len(expected):
        offset = actual[len(expected)][0]
        return Finding(partition, offset, "unexpected", "a record the seals do not hold")
    return None


def _classify(
    partition: int, expected: list[tuple[int, bytes]], actual: list[tuple[int, bytes]], i: int
) -> Finding:
    (offset, want), (claimed, got) = expected[i], actual[i]
    if want == got:
        detail = f"the record sealed at offset {offset} is labelled offset {claimed}"
        return Finding(partition, offset, "reordered", detail)
    seen_at: dict[bytes, list[int]] = defaultdict(list)
    for j, (_, leaf) in enumerate(actual):
        seen_at[leaf].append(j)
    sealed_at: dict[bytes, list[int]] = defaultdict(list)
    for j, (_, leaf) in enumerate(expected):
        sealed_at[leaf].append(j)
    want_later = any(j > i for j in seen_at.get(want, ()))
    if got not in sealed_at:
        if claimed != offset and claimed not in {o for o, _ in expected}:
            detail = f"offset {claimed} holds no sealed record"
            return Finding(partition, offset, "unexpected", detail)
        if want_later:
            return Finding(partition, offset, "unexpected", "a record the seals do not hold")
        return Finding(partition, offset, "changed", "its content differs from the sealed leaf")
    ahead = [j for j in sealed_at[got] if j > i]
    if not ahead:
        return Finding(partition, offset, "unexpected", "a repeat of an earlier sealed record")
    stand_in = expected[ahead[0]][0]
    if want_later:
        detail = f"the record sealed at {offset} comes later; offset {stand_in}'s is here"
        return Finding(partition, offset, "reordered", detail)
    gone = expected[ahead[0] - 1][0]
    span = f"offset {offset}" if gone == offset else f"offsets {offset}-{gone}"
    return Finding(partition, offset, "missing", f"{span} absent; the copy goes on with {stand_in}")


def verify_copy(
    topic: str,
    records: Sequence[tuple[int, int, bytes]],
    seals: Sequence[SealRecord],
    keys: KeyRing,
    *,
    start: int | None = None,
    end: int | None = None,
) -> list[PartitionReport]:
    """Check a copy of `topic` (records as (partition, offset, value), each partition's in
    the copy's order) against its seals; one report per partition found in either."""
    by_partition: dict[int, list[RecordCopy]] = defaultdict(list)
    for partition, offset, value in records:
        by_partition[partition].append(RecordCopy(offset, value))
    sealed: dict[int, list[SealRecord]] = defaultdict(list)
    for seal in seals:
        if seal.checkpoint.topic == topic:
            sealed[seal.checkpoint.partition].append(seal)
    return [
        verify_partition(
            partition, sealed[partition], by_partition[partition], keys, start=start, end=end
        )
        for partition in sorted(set(by_partition) | set(sealed))
    ]
