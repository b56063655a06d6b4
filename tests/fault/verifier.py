"""The verifier: the ledger against every record in the topic, after the cluster healed.

`read_topic` waits until every partition's end offset has stayed put for a while, then reads
every partition from its first offset with a fresh consumer (no group offsets). `verify` checks:

- I1 no loss: every ACKed (marker, event_id) is in the topic;
- I2 no phantoms: every record carries the marker of an event the generator sent;
- I3 no written rejections: an event with no ACK and no ambiguous attempt (every attempt a
  4xx, 429 or refused connection) is absent, and an event invalid on purpose is never
  acknowledged nor stored;
- I4 duplicates only where an ambiguous attempt was retried (counted either way), and every
  copy of an event under the event_id its first claim drew (a retry reuses it: a copy under a
  new one means a claim expired or was lost while its record could still land);
- I5 integrity: record tenant (value and Kafka key) = the key's tenant; content as sent;
  `ce_id` = `event_id`;
- I6 offsets strictly increase within each partition.

It also computes the run's figures: counts, max unavailability, latencies.
"""

from __future__ import annotations

import itertools
import math
import os
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition

from tests.fault.ledger import (
    POSSIBLY_WRITTEN,
    Ledger,
    Outcome,
    content_hash,
)

MAX_EXAMPLES = 5
NEW_EVENT_ID = "I4 copy under a new event_id"


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    key: str | None
    event_id: str | None
    ce_id: str | None
    tenant: str | None
    marker: str | None
    content: str | None

    @classmethod
    def parse(
        cls,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None,
    ) -> Record:
        ce_id = None
        for name, raw in headers or []:
            if name == "ce_id" and raw is not None:
                ce_id = raw.decode(errors="replace")
        body: Any = None
        try:
            body = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return cls(partition, offset, _text(key), None, ce_id, None, None, None)
        context = body.get("context")
        marker = context.get("marker") if isinstance(context, dict) else None
        return cls(
            partition,
            offset,
            _text(key),
            body.get("event_id"),
            ce_id,
            body.get("tenant_id"),
            marker if isinstance(marker, str) else None,
            content_hash(body),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
            "event_id": self.event_id,
            "ce_id": self.ce_id,
            "tenant": self.tenant,
            "marker": self.marker,
            "content": self.content,
        }


def _headers(message: Any) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for name, value in message.headers() or []:
        raw = value if isinstance(value, bytes) else str(value or "").encode()
        out.append((str(name), raw))
    return out


def _text(raw: bytes | None) -> str | None:
    return raw.decode(errors="replace") if raw is not None else None


@dataclass
class Verdict:
    """Counts, figures and violations of one run."""

    sent_requests: int = 0
    events: int = 0
    acked: int = 0
    rejected: int = 0
    ambiguous: int = 0  # ambiguous attempts (per event carried)
    throttled: int = 0
    refused: int = 0
    unresolved: int = 0  # events that never got a final answer before the deadline
    records: int = 0
    lost: int = 0
    phantoms: int = 0
    written_rejections: int = 0
    duplicates: int = 0  # extra records beyond the first, per marker
    duplicates_same_event_id: int = 0
    duplicates_new_event_id: int = 0  # copies whose event_id is not the first copy's
    unexplained_duplicates: int = 0
    integrity_errors: int = 0
    offset_errors: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    max_unavailability: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ack_ms: float = 0.0
    violations: dict[str, list[str]] = field(default_factory=dict)

    def violate(self, invariant: str, example: str) -> None:
        examples = self.violations.setdefault(invariant, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(example)

    @property
    def ok(self) -> bool:
        """The hard invariants hold (I1, I2, I3, I5, I6); I4 is reported separately."""
        return not (
            self.lost
            or self.phantoms
            or self.written_rejections
            or self.integrity_errors
            or self.offset_errors
        )

    def summary(self) -> dict[str, Any]:
        return {
            "sent_requests": self.sent_requests,
            "events": self.events,
            "acked": self.acked,
            "rejected": self.rejected,
            "ambiguous": self.ambiguous,
            "throttled": self.throttled,
            "refused": self.refused,
            "unresolved": self.unresolved,
            "records": self.records,
            "lost": self.lost,
            "phantoms": self.phantoms,
            "written_rejections": self.written_rejections,
            "duplicates": self.duplicates,
            "duplicates_same_event_id": self.duplicates_same_event_id,
            "duplicates_new_event_id": self.duplicates_new_event_id,
            "unexplained_duplicates": self.unexplained_duplicates,
            "integrity_errors": self.integrity_errors,
            "offset_errors": self.offset_errors,
            "status_counts": self.status_counts,
            "max_unavailability_s": round(self.max_unavailability, 2),
            "p50_ms": round(self.p50_ms, 1),
            "p99_ms": round(self.p99_ms, 1),
            "max_ack_ms": round(self.max_ack_ms, 1),
            "violations": self.violations,
        }


def verify(ledger: Ledger, records: list[Record]) -> Verdict:
    """Check I1-I6 of `records` (every record of the topic) against `ledger`."""
    verdict = Verdict(events=len(ledger.events), records=len(records))
    _count_attempts(ledger, verdict)
    history = ledger.attempts_by_marker()
    by_marker: dict[str, list[Record]] = defaultdict(list)
    by_event_id: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        if record.marker is not None:
            by_marker[record.marker].append(record)
        if record.event_id is not None:
            by_event_id[record.event_id].append(record)

    # I2: every record was sent (unknown or unreadable records are phantoms).
    for record in records:
        if record.marker is None or record.marker not in ledger.events:
            verdict.phantoms += 1
            verdict.violate("I2 phantom", f"p{record.partition}@{record.offset} {record.marker}")

    for marker, spec in ledger.events.items():
        tries = history.get(marker, [])
        outcomes = [item.outcome for _, item in tries]
        stored = by_marker.get(marker, [])
        acked_ids = [item.event_id for _, item in tries if item.outcome is Outcome.ACK]
        if not outcomes or outcomes[-1] not in (Outcome.ACK, Outcome.REJECT):
            verdict.unresolved += 1

        # I1: every acknowledged event_id is stored, with this event's marker.
        for event_id in acked_ids:
            holders = by_event_id.get(event_id or "", [])
            if not any(r.marker == marker for r in holders):
                verdict.lost += 1
                verdict.violate("I1 lost", f"{marker} event_id={event_id}")

        # I3: nothing rejected (or never possibly written) is stored or acknowledged.
        if spec.expect_reject and (acked_ids or stored):
            verdict.written_rejections += 1
            verdict.violate(
                "I3 invalid event accepted or stored",
                f"{marker} acks={len(acked_ids)} records={len(stored)}",
            )
        elif stored and not any(o in POSSIBLY_WRITTEN for o in outcomes):
            verdict.written_rejections += 1
            verdict.violate(
                "I3 rejected event stored", f"{marker} outcomes={[o.value for o in outcomes]}"
            )

        # I4: duplicates only after an ambiguous attempt that was retried.
        if len(stored) > 1:
            extra = len(stored) - 1
            verdict.duplicates += extra
            ids = Counter(r.event_id for r in stored)
            verdict.duplicates_same_event_id += sum(n - 1 for n in ids.values() if n > 1)
            if len(ids) > 1:
                verdict.duplicates_new_event_id += len(ids) - 1
                verdict.violate(
                    NEW_EVENT_ID,
                    f"{marker} x{len(stored)} event_ids={sorted(map(str, ids))} "
                    f"outcomes={[o.value for o in outcomes]}",
                )
            # An ambiguous attempt that was followed by another attempt.
            if Outcome.AMBIGUOUS not in outcomes[:-1]:
                verdict.unexplained_duplicates += extra
                verdict.violate(
                    "I4 unexplained duplicate",
                    f"{marker} x{len(stored)} event_ids={len(ids)} "
                    f"outcomes={[o.value for o in outcomes]}",
                )

        # I5: integrity of what is stored.
        for record in stored:
            problems = []
            if record.tenant != spec.tenant:
                problems.append(f"tenant {record.tenant} != {spec.tenant}")
            if record.key != spec.tenant:
                problems.append(f"kafka key {record.key} != {spec.tenant}")
            if record.content != spec.content:
                problems.append("content differs from what was sent")
            if record.ce_id != record.event_id:
                problems.append(f"ce_id {record.ce_id} != event_id {record.event_id}")
            if problems:
                verdict.integrity_errors += 1
                verdict.violate("I5 integrity", f"{marker}: {'; '.join(problems)}")

    # I6: offsets strictly increase within each partition, in the order read.
    last: dict[int, int] = {}
    for record in records:
        previous = last.get(record.partition)
        if previous is not None and record.offset <= previous:
            verdict.offset_errors += 1
            verdict.violate("I6 offsets", f"p{record.partition}: {record.offset} after {previous}")
        last[record.partition] = record.offset

    _figures(ledger, verdict)
    return verdict


def _count_attempts(ledger: Ledger, verdict: Verdict) -> None:
    statuses: Counter[str] = Counter()
    for attempt in ledger.attempts:
        statuses[str(attempt.status) if attempt.status is not None else "none"] += 1
        for item in attempt.items:
            if item.outcome is Outcome.ACK:
                verdict.acked += 1
            elif item.outcome is Outcome.REJECT:
                verdict.rejected += 1
            elif item.outcome is Outcome.AMBIGUOUS:
                verdict.ambiguous += 1
            elif item.outcome is Outcome.THROTTLED:
                verdict.throttled += 1
            else:
                verdict.refused += 1
    verdict.sent_requests = len(ledger.attempts)
    verdict.status_counts = dict(sorted(statuses.items()))


def _figures(ledger: Ledger, verdict: Verdict) -> None:
    acks = sorted(
        attempt.done
        for attempt in ledger.attempts
        if any(item.outcome is Outcome.ACK for item in attempt.items)
    )
    verdict.max_unavailability = max_gap(acks, ledger.load_started, ledger.load_ended)
    latencies = sorted(
        (a.done - a.sent) * 1000
        for a in ledger.attempts
        if any(item.outcome is Outcome.ACK for item in a.items)
    )
    if latencies:
        verdict.p50_ms = percentile(latencies, 50)
        verdict.p99_ms = percentile(latencies, 99)
        verdict.max_ack_ms = latencies[-1]


def max_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch inside [start, end] with none of the (sorted) `times`."""
    if end <= start:
        return 0.0
    points = [start, *(t for t in times if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(points))


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    # nearest rank
    index = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


# -- reading the topic ---------------------------------------------------------------------
def _consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"fault-verifier-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "log_level": 0,
        }
    )


def end_offsets(consumer: Consumer, topic: str, timeout: float = 5.0) -> dict[int, int]:
    metadata = consumer.list_topics(topic, timeout=timeout)
    partitions = sorted(metadata.topics[topic].partitions)
    return {
        p: int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1])
        for p in partitions
    }


def wait_stable_offsets(
    bootstrap: str, topic: str, *, quiet: float, timeout: float
) -> dict[int, int]:
    """End offsets once they have not moved for `quiet` seconds (at most `timeout`)."""
    consumer = _consumer(bootstrap)
    try:
        deadline = time.monotonic() + timeout
        last: dict[int, int] | None = None
        since = time.monotonic()
        while True:
            try:
                current = end_offsets(consumer, topic)
            except Exception:
                current = None
            now = time.monotonic()
            if current is None or current != last:
                last, since = current, now
            elif now - since >= quiet:
                return current
            if now >= deadline:
                raise TimeoutError(f"end offsets of {topic} not stable after {timeout:.0f}s")
            time.sleep(0.25)
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, ends: dict[int, int], timeout: float) -> list[Record]:
    """Every record below `ends` in every partition, from the first offset, in order."""
    consumer = _consumer(bootstrap)
    records: list[Record] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        next_offset = dict.fromkeys(ends, 0)
        pending = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"could not read {topic} to its end offsets {ends}")
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            partition, offset = message.partition(), message.offset()
            if partition is None or offset is None:
                continue
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    continue
                next_offset[partition] = max(next_offset[partition], offset)
            else:
                records.append(
                    Record.parse(
                        partition, offset, message.key(), message.value(), _headers(message)
                    )
                )
                next_offset[partition] = offset + 1
            if next_offset[partition] >= ends[partition]:
                pending.discard(partition)
    finally:
        consumer.close()
    return records


# Faults that take claims from their owners: Redis down or stalled (the service stores without a
# claim rather than refuse). A killed function's claims are not lost: past their deadline a
# retry takes them over under their event_id (so a copy it writes beside what the killed
# process produced shares that id).
CLAIMS_MAY_BE_LOST = frozenset({"redis_down", "redis_pause"})
STORE_FAILED = "idempotency store unavailable"  # the service's log line when a call failed


def keeps_claims(fault: str, function_output: str) -> bool:
    """Whether every claim stayed with its owner (or, its owner killed, passed to the retry
    that took it over) in this run: the fault spares Redis, and no call to the store failed (a
    loaded machine can time one out)."""
    return fault not in CLAIMS_MAY_BE_LOST and STORE_FAILED not in function_output


def check_gate(
    verdict: Verdict,
    *,
    allow_unresolved: bool = False,
    strict_duplicates: bool | None = None,
    claims_kept: bool = False,
) -> None:
    """Fail (AssertionError naming each broken invariant) unless the run is clean.

    The gate: lost = phantoms = written rejections = 0, no integrity or offset error, and
    (unless allowed) every event resolved by the deadline. In strict mode, the default
    (`FAULT_STRICT_DUPLICATES=0` only reports them), duplicates without an ambiguous retry
    (I4) fail it too: one 202, one copy. So do copies under a new event_id when the run's
    fault leaves every claim to its owner or its successor (`claims_kept`: Redis up, and no
    call to the store failed), since a retry reuses its claim's event_id unless that claim was
    lost.
    """
    if strict_duplicates is None:
        strict_duplicates = os.environ.get("FAULT_STRICT_DUPLICATES", "1") != "0"
    broken = [
        f"{name}: {examples}"
        for name, examples in verdict.violations.items()
        if not name.startswith("I4")
        or (strict_duplicates and (name != NEW_EVENT_ID or claims_kept))
    ]
    if not allow_unresolved and verdict.unresolved:
        broken.append(f"unresolved: {verdict.unresolved} event(s) without a final answer")
    if broken:
        raise AssertionError("fault-run invariants violated:\n  " + "\n  ".join(broken))
