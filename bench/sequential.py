"""Sequential latency against a running stack (`make run` in another shell).

    uv run python -m bench.sequential [--single 1000] [--batches 100] [--batch-size 100]

One keep-alive connection, one request at a time: what a single well-behaved client sees.
Prints p50/p90/p99/max in milliseconds. Reads INGEST_URL and DATABASE_URL from .dev/stack.env.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from pathlib import Path

import httpx
import orjson
from devstack.provision import stack_settings

from audit_ingest.adapters.key_admin import create_key

ENV_FILE = Path(".dev/stack.env")


def event(index: int) -> dict[str, object]:
    return {
        "actor": {"id": f"user-{index}", "type": "user", "email": "user@example.com"},
        "action": {"name": "user.created"},
        "resource": {"type": "user", "id": f"user-{index + 1}"},
        "result": {"success": True},
    }


def report(name: str, samples: list[float]) -> None:
    ms = [s * 1000 for s in samples]
    cuts = statistics.quantiles(ms, n=100, method="inclusive")  # cuts[k-1] is the k-th pct
    print(
        f"{name:<22} n={len(ms):<5} p50={cuts[49]:6.2f} ms  p90={cuts[89]:6.2f} ms  "
        f"p99={cuts[98]:6.2f} ms  max={max(ms):6.2f} ms  mean={statistics.fmean(ms):6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--single", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    if not ENV_FILE.exists():
        raise SystemExit("no .dev/stack.env: start `make run` in another shell first")
    env = dict(line.split("=", 1) for line in ENV_FILE.read_text().split() if "=" in line)
    settings = stack_settings(env)
    key = create_key(
        settings.database_url.get_secret_value(),
        tenant_id=uuid.uuid4(),
        name="bench-sequential",
        scopes=("events:write",),
        rate_limit=10_000_000,
        expires_at=None,
    ).secret
    headers = {"content-type": "application/json", "x-api-key": key}
    base = env["INGEST_URL"]
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for i in range(args.warmup):
            client.post("/v1/events", content=orjson.dumps(event(i))).raise_for_status()
        single: list[float] = []
        for i in range(args.single):
            body = orjson.dumps(event(i))
            started = time.perf_counter()
            response = client.post("/v1/events", content=body)
            single.append(time.perf_counter() - started)
            if response.status_code != 202:
                raise SystemExit(f"single request {i}: {response.status_code} {response.text}")
        batch: list[float] = []
        for i in range(args.batches):
            body = orjson.dumps({"events": [event(i * 1000 + j) for j in range(args.batch_size)]})
            started = time.perf_counter()
            response = client.post("/v1/events/batch", content=body)
            batch.append(time.perf_counter() - started)
            if response.status_code != 202 or response.json()["accepted"] != args.batch_size:
                raise SystemExit(f"batch request {i}: {response.status_code} {response.text}")
    print(f"target {base}, sequential, one keep-alive connection")
    report("single event", single)
    report(f"batch of {args.batch_size}", batch)


if __name__ == "__main__":
    main()
