"""The seed's Definition of Done, run (not computed): 5,000 single-event requests per second.

    uv run python -m bench.dod [--rate 5000] [--seconds 60] [--conns 512]

`ingest-event` (inline mode: API key, rate limit, validation, enrichment, produce, ack) pinned
to CPU 0, one worker; the Go generator, the broker, Redis and PostgreSQL on CPU 1. The
generator offers `--rate` requests per second open loop (coordinated-omission corrected) for
`--seconds`, after a short warm-up. Then every record of the run is read back from
`audit.events.v1` (a fresh tenant, so nothing else is counted) and matched with the 202s: the
number of records, the distinct request numbers among them (each request's body carries its
own), and none twice.

Prints one JSON document: offered and achieved rates, p50/p99/max latency, errors, the
function's CPU, 202s, records read back, duplicates, missing; and PASS only when p99 < 200 ms,
0 errors and every 202 is in the topic once. Results go to bench/results/<ts>-dod.json.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

from audit_ingest.adapters.key_admin import create_key
from bench import bodies, generator, procs
from bench.run import PORTS, WORK, machine_info
from bench.stack import REPO, acquire, pin

RESULTS = REPO / "bench" / "results"
P99_LIMIT_MS = 200.0


def _watermarks(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dod-{uuid.uuid4()}"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for p in partitions
        }
    finally:
        consumer.close()


def _read_run(
    bootstrap: str, topic: str, start: dict[int, tuple[int, int]], tenant: str
) -> list[str]:
    """The actor ids of this run's records (the tenant's), from `start`'s high offsets on."""
    end = _watermarks(bootstrap, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"dod-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    wanted = {p: end[p][1] for p in end if end[p][1] > start.get(p, (0, 0))[1]}
    consumer.assign([TopicPartition(topic, p, start.get(p, (0, 0))[1]) for p in wanted])
    position = {p: start.get(p, (0, 0))[1] for p in wanted}
    actors: list[str] = []
    key = tenant.encode()
    deadline = time.monotonic() + 300
    try:
        while any(position[p] < wanted[p] for p in wanted) and time.monotonic() < deadline:
            for message in consumer.consume(10_000, timeout=1.0):
                partition, offset = message.partition(), message.offset()
                if message.error() or partition is None or offset is None:
                    continue  # an event of the consumer's own (end of partition), not a record
                position[partition] = offset + 1
                if message.key() == key:
                    actors.append(orjson.loads(message.value() or b"")["actor"]["id"])
    finally:
        consumer.close()
    return actors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--conns", type=int, default=512)
    parser.add_argument("--stack", choices=("auto", "own", "running"), default="auto")
    parser.add_argument("--name", default="dod")
    args = parser.parse_args()
    build = generator.ensure_built()
    paths = bodies.write(WORK / "bodies")
    stack = acquire(args.stack)
    pinned = pin(stack.pids, "1")
    tenant = str(uuid.uuid4())
    issued = create_key(
        stack.settings.database_url.get_secret_value(),
        tenant_id=uuid.UUID(tenant),
        name="bench dod",
        scopes=("events:write",),
        rate_limit=1_000_000_000,
        expires_at=None,
    )
    env = stack.function_env()
    topic = stack.settings.kafka_topic
    bootstrap = stack.env["KAFKA_BOOTSTRAP_SERVERS"]
    function = procs.start("ingest_event", PORTS["ingest_event"], env, WORK / "logs", cpu="0")
    try:
        start = _watermarks(bootstrap, topic)
        cpu0, wall0 = function.cpu(), time.monotonic()
        result = generator.offer_single_events(
            build.path,
            function_url=function.url,
            body=paths["single"],
            api_key=issued.secret,
            rate=args.rate,
            conns=args.conns,
            duration=args.seconds,
            warmup=args.warmup,
            label="dod",
        )
        cpu, wall = function.cpu() - cpu0, time.monotonic() - wall0
    finally:
        function.stop()
    try:
        actors = _read_run(bootstrap, topic, start, tenant)
    finally:
        stack.close()
    # Each request's actor id is "user-<its __SEQ__>-0": one per request.
    seen = Counter(actors)
    accepted = int(result["ok_all"])
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    missing = max(0, accepted - len(seen))
    latency = result["latency_ms"]
    verdict = (
        latency["p99"] < P99_LIMIT_MS
        and result["error_total"] == 0
        and missing == 0
        and duplicates == 0
        and len(seen) == accepted
    )
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        # Which CPU: sessions get different machines, and the rate depends on it.
        "machine": machine_info(),
        "offered_rps": args.rate,
        "seconds": args.seconds,
        "conns": args.conns,
        "achieved_rps": round(result["rate_achieved"], 1),
        "latency_ms": {k: latency[k] for k in ("p50", "p99", "max")},
        "errors": result["errors"],
        "error_total": result["error_total"],
        "function_cpu_s": round(cpu, 2),
        "function_cpu_share_of_one_core": round(cpu / wall, 3),
        "function_cpu_us_per_202": round(cpu / accepted * 1e6, 1) if accepted else None,
        "accepted_202": accepted,
        "records_read_back": len(actors),
        "distinct_requests_in_topic": len(seen),
        "duplicates": duplicates,
        "missing": missing,
        "stored_without_a_202_seen": max(0, len(seen) - accepted),
        "pinned_infra": pinned,
        "timeline_errors": [s["errors"] for s in result.get("timeline") or []],
        "pass": verdict,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}-{args.name}.json"
    path.write_text(json.dumps({"report": report, "generator": result}, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    print(("PASS" if verdict else "FAIL") + f" ({path.relative_to(REPO)})")


if __name__ == "__main__":
    main()
