"""The sealer's loop: consume the events topic, seal ranges, publish each seal and commit the
consumed offsets in one Kafka transaction (exactly once: a crash aborts the open transaction,
so no seal is published twice and no range is skipped).

    init_transactions (fences an earlier incarnation with the same transactional.id and
    aborts its open transaction) -> subscribe -> on assignment, each partition resumes from
    its last committed seal (its chain head, hash and next offset) -> consume -> every
    SEAL_MAX_RECORDS records or SEAL_MAX_SECONDS: begin, produce the seal, send the offsets
    with the group's metadata (a zombie from an older generation is fenced), commit.

Clients are built in `run`, not at construction, and closed when `stop` (SIGTERM) ends the
loop; what is pending then is sealed first, so a rolling update re-reads nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from audit_ingest.adapters.seal_store import last_seal
from audit_ingest.domain.checkpoint import SealRecord
from audit_ingest.domain.seal_keys import SigningKey
from audit_ingest.domain.sealing import PartitionSealer
from audit_ingest.domain.timestamps import format_rfc3339_ms, parse_rfc3339
from audit_ingest.logs import KafkaLog
from audit_ingest.sealer import metrics
from audit_ingest.settings import Settings

LOG = logging.getLogger("audit_ingest.sealer")
_BATCH = 500
_RETRY_SECONDS = 1.0


class Sealer:
    def __init__(
        self,
        settings: Settings,
        key: SigningKey,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_commit: Callable[[list[SealRecord]], None] | None = None,
    ) -> None:
        self._settings = settings
        self._key = key
        self._clock = clock
        self._on_commit = on_commit  # for benches and tests: called after each commit
        self._stop = threading.Event()
        self._sealers: dict[int, PartitionSealer] = {}
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._lag_due = 0.0

    @property
    def transactional_id(self) -> str:
        s = self._settings
        return s.sealer_transactional_id or f"audit-ingest-sealer-{s.node_name}"

    def stop(self) -> None:
        """Ask the loop to seal what is pending and return (safe from a signal handler)."""
        self._stop.set()

    def run(self) -> None:
        s = self._settings
        connection = {**s.kafka_connection(), "logger": KafkaLog()}
        self._producer = Producer(
            {
                **connection,
                "transactional.id": self.transactional_id,
                "transaction.timeout.ms": s.sealer_transaction_timeout_ms,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
            }
        )
        timeout = s.sealer_transaction_timeout_ms / 1000
        self._producer.init_transactions(timeout)
        self._consumer = Consumer(
            {
                **connection,
                "group.id": s.sealer_group_id,
                # Static membership under the transactional id: a restarted container (same
                # pod name) takes its partitions back at once, not after the dead member's
                # session times out; a short session bounds the wait for a pod gone for good.
                "group.instance.id": self.transactional_id,
                "session.timeout.ms": 10_000,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "enable.partition.eof": False,
            }
        )
        self._consumer.subscribe(
            [s.kafka_topic], on_assign=self._assign, on_revoke=self._revoke, on_lost=self._revoke
        )
        LOG.info("sealer started", extra={"transactional_id": self.transactional_id})
        try:
            while not self._stop.is_set():
                self._step()
            self._publish([p for p in self._sealers.values() if p.pending])
        finally:
            self._consumer.close()
            self._producer.flush(5)
            LOG.info("sealer stopped")

    def _step(self) -> None:
        s = self._settings
        assert self._consumer is not None
        for message in self._consumer.consume(_BATCH, 0.2):
            if message.error() is not None:
                LOG.warning("consume error", extra={"error": str(message.error())})
                continue
            sealer = self._sealers.get(message.partition() or 0)
            if sealer is None:
                continue
            added = sealer.add(message.offset() or 0, message.value() or b"", self._clock())
            if added and sealer.pending >= s.seal_max_records:
                self._publish([sealer])
        now = self._clock()
        due = [
            p for p in self._sealers.values() if p.due(now, s.seal_max_records, s.seal_max_seconds)
        ]
        if due:
            self._publish(due)
        if now >= self._lag_due:
            self._lag_due = now + 2.0
            self._report_lag()

    def _publish(self, sealers: list[PartitionSealer]) -> None:
        """Seal and commit `sealers`' pending ranges in one transaction; on an abortable
        error the ranges stay pending and are sealed again after a pause."""
        if not sealers:
            return
        assert self._producer is not None
        assert self._consumer is not None
        s = self._settings
        timeout = s.sealer_transaction_timeout_ms / 1000
        sealed_at = format_rfc3339_ms(datetime.now(UTC))
        records = [p.cut(self._key, sealed_at) for p in sealers]
        try:
            self._producer.begin_transaction()
            for record in records:
                cp = record.checkpoint
                self._producer.produce(
                    s.seals_topic,
                    record.encode(),
                    key=str(cp.partition).encode(),
                    partition=cp.partition,
                    headers=[("content-type", b"application/json")],
                )
            offsets = [
                TopicPartition(s.kafka_topic, r.checkpoint.partition, r.checkpoint.last_offset + 1)
                for r in records
            ]
            group = self._consumer.consumer_group_metadata()
            self._producer.send_offsets_to_transaction(offsets, group, timeout)
            self._producer.commit_transaction(timeout)
        except KafkaException as exc:
            for p in sealers:
                p.rollback()
            error = exc.args[0]
            if not getattr(error, "txn_requires_abort", lambda: False)():
                raise  # fatal (fenced, or unknown): exit; the Deployment restarts the pod
            LOG.warning("seal transaction aborted", extra={"error": str(error)})
            metrics.ABORTS.inc()
            self._producer.abort_transaction(timeout)
            self._stop.wait(_RETRY_SECONDS)
            return
        stamp = time.time()
        for p, record in zip(sealers, records, strict=True):
            p.commit()
            metrics.RECORDS.inc(record.checkpoint.count)
            metrics.SEALS.inc()
            metrics.LAST_SEAL.labels(str(p.partition)).set(stamp)
        if self._on_commit is not None:
            self._on_commit(records)

    def _assign(self, consumer: Consumer, assigned: list[TopicPartition]) -> None:
        s = self._settings
        connection = {**s.kafka_connection(), "logger": KafkaLog()}
        for tp in assigned:
            # Waits for an open transaction of a crashed owner to be aborted (at most its
            # transaction timeout): only then is the last committed seal known.
            seal = last_seal(
                connection,
                s.seals_topic,
                s.kafka_topic,
                tp.partition,
                timeout=s.sealer_transaction_timeout_ms / 1000 + 30,
            )
            checkpoint = seal.checkpoint if seal is not None else None
            sealer = PartitionSealer(s.kafka_topic, tp.partition, checkpoint)
            self._sealers[tp.partition] = sealer
            start = sealer.base.next_offset
            tp.offset = OFFSET_BEGINNING if start is None else start
            if checkpoint is not None:
                metrics.LAST_SEAL.labels(str(tp.partition)).set(
                    parse_rfc3339(checkpoint.sealed_at).timestamp()
                )
            LOG.info(
                "partition assigned",
                extra={"partition": tp.partition, "resume_at": start, "seals": _seq(seal)},
            )
        consumer.assign(assigned)

    def _revoke(self, consumer: Consumer, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            # What was pending is sealed by the next owner, which re-reads it.
            self._sealers.pop(tp.partition, None)
            for gauge in (metrics.LAG, metrics.LAST_SEAL):
                with contextlib.suppress(KeyError):
                    gauge.remove(str(tp.partition))
        consumer.unassign()

    def _report_lag(self) -> None:
        assert self._consumer is not None
        for partition, sealer in self._sealers.items():
            try:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self._settings.kafka_topic, partition), cached=True
                )
            except KafkaException:
                continue
            if high < 0:
                continue
            sealed_next = sealer.base.next_offset if sealer.base.next_offset is not None else low
            metrics.LAG.labels(str(partition)).set(max(0, high - sealed_next))


def _seq(seal: Any) -> int:
    return 0 if seal is None else int(seal.checkpoint.sequence) + 1
