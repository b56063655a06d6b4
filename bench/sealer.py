"""The sealer's throughput and CPU per record (docs/benchmarks.md, "Sealer").

    uv run --frozen python -m bench.sealer [--records 20000] [--seal-max-records 1000] [--no-kafka]

1. core: the pure sealing path in this process (leaf = canonical JSON + SHA-256, chain,
   Merkle root and Ed25519 signature per range), over ingest-shaped events (~650 bytes).
2. kafka (unless --no-kafka): a LocalStack on free ports in a temporary folder; the events
   topic (3 partitions) is filled first, then the real sealer (consume -> seal ->
   transactional commit) runs in this process until every record is sealed. Rate and CPU
   (this process's user+sys) are taken from the first committed seal to the last, so the
   group join at start and the producer that filled the topic are not counted.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import Producer
from devstack import LocalStack, StackPorts
from devstack.provision import provision, stack_settings

from audit_ingest.domain.checkpoint import SealRecord
from audit_ingest.domain.seal_keys import SigningKey
from audit_ingest.domain.sealing import PartitionSealer
from audit_ingest.sealer.runner import Sealer

REPO = Path(__file__).resolve().parent.parent


def event(i: int) -> bytes:
    """An event shaped as the ingest path stores it (enriched, compact JSON)."""
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "tenant_id": "11111111-1111-4111-8111-111111111111",
            "api_key_id": "22222222-2222-4222-8222-222222222222",
            "received_at": "2026-12-01T10:00:00.123Z",
            "timestamp": "2026-12-01T10:00:00.000Z",
            "event_date": "2026-12-01",
            "actor": {"id": f"user-{i}", "type": "user", "email": "user@example.com"},
            "action": {"name": "document.update"},
            "resource": {"type": "document", "id": f"doc-{i % 97}"},
            "result": {"success": True},
            "context": {"ip": "10.0.0.1", "user_agent": "bench/1.0", "request_id": f"r-{i}"},
            "metadata": {"n": i, "tags": ["a", "b"]},
            "processing": {"node": "n1", "function": "ingest-event", "revision": "r1"},
        }
    )


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def core(values: list[bytes], per_seal: int) -> tuple[float, float]:
    key = SigningKey.generate()
    sealer = PartitionSealer("audit.events.v1", 0, None)
    started, cpu = time.perf_counter(), cpu_seconds()
    for offset, value in enumerate(values):
        sealer.add(offset, value, 0.0)
        if sealer.pending >= per_seal:
            sealer.cut(key, "2026-12-01T10:00:00.000Z")
            sealer.commit()
    if sealer.pending:
        sealer.cut(key, "2026-12-01T10:00:00.000Z")
        sealer.commit()
    return time.perf_counter() - started, cpu_seconds() - cpu


def kafka(values: list[bytes], per_seal: int) -> tuple[float, float]:
    root = Path(tempfile.mkdtemp(prefix="audit-ingest-bench-sealer-"))
    root.chmod(0o755)
    stack = LocalStack(root=root, ports=StackPorts.free(), kafka_libs=REPO / ".dev" / "kafka-libs")
    try:
        stack.start()
        settings = stack_settings(dict(stack.env))
        provision(settings)
        producer = Producer(
            {"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 20}
        )
        for i, value in enumerate(values):
            producer.produce(settings.kafka_topic, value, key=f"tenant-{i % 50}".encode())
            if i % 10_000 == 0:
                producer.flush()
        producer.flush()
        del producer  # closed now: it would keep calling a stopped broker
        key_file = root / "seal-key.pem"
        key_file.write_bytes(SigningKey.generate().pem())
        sealing = settings.model_copy(
            update={
                "seal_signing_key_file": str(key_file),
                "seal_max_records": per_seal,
                "seal_max_seconds": 1.0,
                "sealer_metrics_port": 0,
            }
        )
        total, seen = len(values), [0]
        marks: list[tuple[float, float, int]] = []  # (wall, cpu, records sealed so far)
        finished = threading.Event()

        def committed(records: list[SealRecord]) -> None:
            seen[0] += sum(r.checkpoint.count for r in records)
            marks.append((time.perf_counter(), cpu_seconds(), seen[0]))
            if seen[0] >= total:
                finished.set()

        sealer = Sealer(sealing, SigningKey.from_pem(key_file.read_bytes()), on_commit=committed)
        thread = threading.Thread(target=sealer.run, daemon=True)
        started = time.perf_counter()
        thread.start()
        if not finished.wait(600):
            raise TimeoutError(f"{seen[0]} of {total} sealed in 600 s")
        sealer.stop()
        thread.join(30)
        (t0, c0, n0), (t1, c1, n1) = marks[0], marks[-1]
        print(f"kafka: first seal committed {t0 - started:.1f} s after start (group join)")
        return (t1 - t0) * total / (n1 - n0), (c1 - c0) * total / (n1 - n0)
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--seal-max-records", type=int, default=1000)
    parser.add_argument("--no-kafka", action="store_true")
    args = parser.parse_args()
    values = [event(i) for i in range(args.records)]
    size = sum(map(len, values)) / len(values)
    print(f"{args.records} records of {size:.0f} bytes, seals of {args.seal_max_records}")
    wall, cpu = core(values, args.seal_max_records)
    print(
        f"core : {args.records / wall:,.0f} records/s, {cpu / args.records * 1e6:.1f} CPU us/record"
    )
    if not args.no_kafka:
        wall, cpu = kafka(values, args.seal_max_records)
        print(
            f"kafka: {args.records / wall:,.0f} records/s, "
            f"{cpu / args.records * 1e6:.1f} CPU us/record (sealer thread and librdkafka, "
            f"from the first committed seal to the last)"
        )


if __name__ == "__main__":
    main()
