"""Send a burst of audit events through the SDK's batcher to a running `make run`.

    uv run python sdk/python/examples/burst.py --api-key aik_... [--events 5000]

The URL is INGEST_URL from .dev/stack.env (or --url); the API key is --api-key or the
AUDIT_INGEST_API_KEY environment variable. Prints how many events were sent, accepted and
rejected, and how long it took.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

from audit_ingest_sdk import AuditClient, FailedEvent

ENV_FILE = Path(".dev/stack.env")
REPO_ENV_FILE = Path(__file__).resolve().parents[3] / ".dev" / "stack.env"


def ingest_url(env_file: Path) -> str:
    for candidate in (env_file, REPO_ENV_FILE):
        if candidate.exists():
            for line in candidate.read_text().splitlines():
                name, _, value = line.partition("=")
                if name.strip() == "INGEST_URL" and value.strip():
                    return value.strip()
    raise SystemExit(f"no INGEST_URL in {env_file}: start `make run` in another shell first")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5000, help="events to send (5000)")
    parser.add_argument("--batch-size", type=int, default=100, help="events per batch (100)")
    parser.add_argument("--api-key", default=os.environ.get("AUDIT_INGEST_API_KEY"))
    parser.add_argument("--url", help="the API's base URL (default: INGEST_URL)")
    parser.add_argument("--env-file", type=Path, default=ENV_FILE)
    parser.add_argument("--gzip", action="store_true", help="gzip request bodies")
    args = parser.parse_args()
    if not args.api_key:
        raise SystemExit("an API key is needed: --api-key or AUDIT_INGEST_API_KEY")
    url = args.url or ingest_url(args.env_file)

    failures: list[FailedEvent] = []
    run = uuid.uuid4().hex[:12]
    print(f"sending {args.events} events to {url} in batches of up to {args.batch_size} ...")
    started = time.perf_counter()
    with AuditClient(args.api_key, url, gzip=args.gzip) as client:
        batcher = client.batcher(
            max_batch_events=args.batch_size,
            max_queue_size=max(args.events, 10_000),
            on_error=failures.extend,
        )
        for n in range(args.events):
            batcher.enqueue(
                {
                    "actor": {"id": f"user-{n % 97}", "type": "user"},
                    "action": {"name": "document.viewed"},
                    "resource": {"type": "document", "id": f"doc-{n}"},
                    "result": {"success": True},
                    "context": {"burst": run, "n": n},
                }
            )
        enqueued = time.perf_counter() - started
        batcher.close()  # sends what is still queued and waits for the answers
    elapsed = time.perf_counter() - started
    stats = batcher.stats()

    print(f"sent      {stats.enqueued}")
    print(f"accepted  {stats.accepted}")
    print(f"rejected  {stats.rejected}")
    print(f"dropped   {stats.dropped}")
    print(f"batches   {stats.batches}")
    print(f"enqueue   {enqueued * 1000:.0f} ms for all events (the caller never waits on I/O)")
    print(f"elapsed   {elapsed:.2f} s  ({stats.accepted / elapsed:.0f} events/s stored)")
    for failed in failures[:5]:
        reasons = ", ".join(f"{e.field}: {e.code}" for e in failed.errors) or str(failed.error)
        print(f"  rejected {failed.event.get('context')}: {reasons}")
    return 0 if stats.accepted == args.events else 1


if __name__ == "__main__":
    sys.exit(main())
