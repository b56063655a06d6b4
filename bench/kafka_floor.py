"""B1, the Kafka floor: the functions' producer settings and records, straight from Python.

    KAFKA_BOOTSTRAP_SERVERS=... python -m bench.kafka_floor --out b1.json

No HTTP, no auth, no validation: records built once by the library's own code (the same
enrichment, value and CloudEvents headers as the functions write, key = one tenant), then
produced with `producer_config(Settings())`, the functions' exact librdkafka settings:

- `awaited_ms`: one record produced and its delivery report awaited, one at a time (the
  latency floor of a single-event request);
- `flush100_ms`: 100 records produced, then `flush()` (the floor of a batch of 100);
- `events_per_s`: records produced flat out (queue kept full), until the last report.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from audit_ingest.bootstrap import package_version, producer_config
from audit_ingest.domain.enrichment import Processing, RequestContext, enrich
from audit_ingest.domain.principal import Principal
from audit_ingest.domain.records import KafkaRecord, build_record, default_source, serialize
from audit_ingest.domain.validation import validate_event
from audit_ingest.settings import get_settings

TENANT = "bebebebe-0000-4000-8000-000000000001"


def build_records(count: int, body: bytes) -> list[KafkaRecord]:
    settings = get_settings()
    principal = Principal(TENANT, str(uuid.uuid4()), ("events:write",), 1_000_000_000)
    processing = Processing("bench", "kafka-floor", "bench", package_version())
    now = datetime.now(UTC)
    records = []
    for index in range(count):
        payload = orjson.loads(body.replace(b"__SEQ__", f"{index:012d}".encode()))
        valid = validate_event(payload, tenant_id=TENANT, received_at=now, limits=settings.limits())
        request = RequestContext(uuid.uuid4().hex, now, "127.0.0.1", "Go-http-client/1.1")
        enriched = enrich(
            valid,
            event_id=str(uuid.uuid4()),
            principal=principal,
            request=request,
            processing=processing,
        )
        records.append(
            build_record(
                enriched,
                serialize(enriched),
                topic=settings.kafka_topic,
                source=default_source(principal),
            )
        )
    return records


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    cuts = statistics.quantiles(ms, n=1000, method="inclusive")
    return {
        "p50": round(cuts[499], 3),
        "p90": round(cuts[899], 3),
        "p99": round(cuts[989], 3),
        "max": round(ms[-1], 3),
        "n": len(ms),
    }


class Floor:
    def __init__(self, config: dict[str, Any]) -> None:
        self.producer = Producer(config)
        self.delivered = 0
        self.failed = 0

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.failed += 1

    def produce(self, record: KafkaRecord) -> None:
        while True:
            try:
                self.producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers),
                    on_delivery=self._on_delivery,
                )
                return
            except BufferError:
                self.producer.poll(0.01)

    def wait_for(self, count: int) -> None:
        while self.delivered + self.failed < count:
            self.producer.poll(1.0)

    def awaited(self, records: list[KafkaRecord], rounds: int, warmup: int) -> list[float]:
        samples = []
        for index in range(rounds + warmup):
            expected = self.delivered + self.failed + 1
            started = time.perf_counter()
            self.produce(records[index % len(records)])
            self.wait_for(expected)
            if index >= warmup:
                samples.append(time.perf_counter() - started)
        return samples

    def batches(self, records: list[KafkaRecord], size: int, rounds: int) -> list[float]:
        samples = []
        for index in range(rounds):
            started = time.perf_counter()
            for offset in range(size):
                self.produce(records[(index * size + offset) % len(records)])
            self.producer.flush(30)
            samples.append(time.perf_counter() - started)
        return samples

    def flat_out(self, records: list[KafkaRecord], count: int) -> tuple[float, float]:
        """(records per second, CPU seconds of this process) for `count` records."""
        base = self.delivered + self.failed
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        for index in range(count):
            self.produce(records[index % len(records)])
            if index % 1000 == 0:
                self.producer.poll(0)
        self.wait_for(base + count)
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        used = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
        return count / elapsed, used


def measure(body: bytes, *, awaited: int, flushes: int, flat: int) -> dict[str, Any]:
    settings = get_settings()
    config = producer_config(settings)
    records = build_records(2000, body)
    floor = Floor(config)
    floor.awaited(records, 20, 0)  # connect, fetch metadata, acquire the idempotent PID
    result: dict[str, Any] = {
        "producer_config": {k: v for k, v in config.items() if "sasl" not in k},
        "record_bytes": statistics.fmean(len(r.value) for r in records),
    }
    result["awaited_ms"] = percentiles(floor.awaited(records, awaited, 50))
    result["flush100_ms"] = percentiles(floor.batches(records, 100, flushes))
    rate, cpu = floor.flat_out(records, flat)
    result["events_per_s"] = round(rate, 1)
    result["producer_cpu_us_per_event"] = round(cpu / flat * 1e6, 2)
    result["failed"] = floor.failed
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--body", type=Path, required=True, help="single-event body template")
    parser.add_argument("--awaited", type=int, default=2000)
    parser.add_argument("--flushes", type=int, default=300)
    parser.add_argument("--flat", type=int, default=100_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = measure(
        args.body.read_bytes(), awaited=args.awaited, flushes=args.flushes, flat=args.flat
    )
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
