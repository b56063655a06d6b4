"""A producer process for the spool outage test: the SDK's spool as an application uses it.

    python tests/sdk/spool_producer.py URL KEY SPOOL RUN START STOP [--hold]

Sends the events `START`..`STOP-1` (`context.marker`, all with `context.run`) from four
threads through `AuditClient.spool(SPOOL)`, printing one JSON line of the spool's state every
0.2 s (`{"spooled": ..., "pending": ...}`), one `{"resumed": n}` line first (events found in
the file at open), and `{"sent": n}` once every `send` returned. Without `--hold` it then
flushes until the spool is empty and exits 0 (1 when that takes over 120 s); with `--hold` it
waits to be killed. No idempotency key is given: the SDK assigns them as it spools.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from audit_ingest_sdk import AuditClient, SpoolingClient

THREADS = 4
FLUSH_TIMEOUT = 120.0


def event(run: str, marker: int) -> dict[str, Any]:
    return {
        "actor": {"id": f"user-{marker % 97}", "type": "user"},
        "action": {"name": "document.viewed"},
        "resource": {"type": "document", "id": f"doc-{marker}"},
        "result": {"success": True},
        "context": {"run": run, "marker": marker},
    }


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def report(spool: SpoolingClient, done: threading.Event) -> None:
    while not done.wait(0.2):
        stats = spool.stats()
        say(spooled=stats.spooled, pending=stats.pending, accepted=stats.accepted)


def main(argv: list[str]) -> int:
    url, key, path, run, start, stop = argv[:6]
    hold = "--hold" in argv[6:]
    client = AuditClient(key, url)
    # Short backoffs: the test wants delivery soon after the broker is back.
    spool = client.spool(path, flush_interval=0.2, backoff=0.2, max_backoff=2.0)
    say(resumed=spool.stats().pending)
    done = threading.Event()
    threading.Thread(target=report, args=(spool, done), daemon=True).start()

    def produce(offset: int) -> None:
        for marker in range(int(start) + offset, int(stop), THREADS):
            spool.send(event(run, marker))

    producers = [threading.Thread(target=produce, args=(n,)) for n in range(THREADS)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join()
    say(sent=int(stop) - int(start))
    if hold:
        while True:
            time.sleep(60)
    flushed = spool.flush(FLUSH_TIMEOUT)
    done.set()
    stats = spool.stats()
    say(flushed=flushed, pending=stats.pending, accepted=stats.accepted, dead=stats.dead_letters)
    client.close()
    return 0 if flushed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
