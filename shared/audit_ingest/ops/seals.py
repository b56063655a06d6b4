"""The `audit-ingest seals` operations over Kafka and files: thin glue around the pure core
(domain/seal_*.py) and the seals reader (adapters/seal_store.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from audit_ingest.adapters import seal_store
from audit_ingest.domain.checkpoint import SealRecord
from audit_ingest.domain.seal_errors import SealError
from audit_ingest.domain.seal_export import ExportedRecord
from audit_ingest.domain.seal_keys import KeyRing, SigningKey
from audit_ingest.domain.seal_proof import build_proof
from audit_ingest.domain.seal_verify import (
    PartitionReport,
    RecordCopy,
    verify_copy,
    verify_partition,
)
from audit_ingest.ops.kafka_client import client_config
from audit_ingest.settings import Settings


def signing_key(settings: Settings) -> SigningKey:
    path = settings.seal_signing_key_file
    if not path:
        raise SealError("SEAL_SIGNING_KEY_FILE", "not set: the sealer needs its private key")
    try:
        return SigningKey.from_pem(Path(path).read_bytes())
    except OSError as exc:
        raise SealError("SEAL_SIGNING_KEY_FILE", f"cannot read {path}: {exc.strerror}") from None


def keyring(settings: Settings, public_keys: Path | None) -> KeyRing:
    """The trusted keys: --public-keys, else SEAL_PUBLIC_KEYS_FILE, else the signing key's."""
    named = public_keys or (
        Path(settings.seal_public_keys_file) if settings.seal_public_keys_file else None
    )
    if named is not None:
        try:
            return KeyRing.from_document(orjson.loads(named.read_bytes()))
        except (OSError, orjson.JSONDecodeError) as exc:
            raise SealError(str(named), f"cannot read a public-keys document: {exc}") from None
    if settings.seal_signing_key_file:
        return KeyRing([signing_key(settings).public()])
    raise SealError("--public-keys", "give the public-keys document (or set SEAL_PUBLIC_KEYS_FILE)")


def verify_topic(
    settings: Settings,
    keys: KeyRing,
    partitions: list[int] | None,
    start: int | None,
    end: int | None,
) -> list[PartitionReport]:
    """Recompute every leaf of the events topic's sealed range and check it, per partition."""
    connection = client_config(settings)
    topic = settings.kafka_topic
    reports = []
    for partition in partitions or seal_store.partitions(connection, topic):
        seals = seal_store.read_seals(connection, settings.seals_topic, topic, partition)
        low, high = seal_store.watermarks(connection, topic, partition)
        if not seals:
            reports.append(PartitionReport(partition, unsealed=high - low))
            continue
        first, last = seals[0].checkpoint.first_offset, seals[-1].checkpoint.last_offset
        lo = max(first, low, start if start is not None else first)
        hi = min(last, high - 1, end if end is not None else last)
        records = [
            RecordCopy(r.offset, r.value)
            for r in seal_store.read_range(connection, topic, partition, lo, hi + 1)
        ]
        report = verify_partition(partition, seals, records, keys, start=lo, end=hi)
        report.unsealed = max(0, high - (last + 1))
        if low > first:
            report.notes.append(f"offsets {first}-{low - 1} have expired from {topic}")
        reports.append(report)
    return reports


def verify_export(
    settings: Settings,
    keys: KeyRing,
    events: list[ExportedRecord],
    seals: list[ExportedRecord] | None,
    start: int | None,
    end: int | None,
) -> list[PartitionReport]:
    """Check an exported copy against seals from an export (`seals`) or from the topic."""
    topic = settings.kafka_topic
    mine = [(r.partition, r.offset, r.value) for r in events if r.topic == topic]
    if not mine:
        raise SealError("FILE", f"holds no record of {topic}")
    if seals is not None:
        sealed = [SealRecord.decode(r.value) for r in seals if r.topic == settings.seals_topic]
    else:
        connection = client_config(settings)
        sealed = [
            seal
            for partition in sorted({p for p, _, _ in mine})
            for seal in seal_store.read_seals(connection, settings.seals_topic, topic, partition)
        ]
    reports = verify_copy(topic, mine, sealed, keys, start=start, end=end)
    present = {p for p, _, _ in mine}
    return [report for report in reports if report.partition in present]


def prove(
    settings: Settings, event_id: str, partitions: list[int] | None
) -> tuple[dict[str, Any], bytes]:
    """The inclusion proof of the event with `event_id`, and the event as stored."""
    connection = client_config(settings)
    topic = settings.kafka_topic
    among = partitions or seal_store.partitions(connection, topic)
    record = seal_store.find_event(connection, topic, event_id, among)
    if record is None:
        raise SealError("EVENT_ID", f"no record of {topic} carries event_id {event_id}")
    seals = seal_store.read_seals(connection, settings.seals_topic, topic, record.partition)
    for seal in seals:
        if seal.checkpoint.covers(record.offset):
            return build_proof(seal, record.offset, record.value), record.value
    raise SealError(
        "EVENT_ID", f"{topic}[{record.partition}]@{record.offset} is not sealed yet; retry later"
    )
