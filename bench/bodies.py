"""Request body templates for the generator: one event, a batch of 100, a batch of 1000.

`__SEQ__` is replaced by the generator with a number unique to each request, so every event
of every request differs (actor, resource and context ids), and none carries an idempotency
key: nothing is de-duplicated, every event is validated, enriched and produced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

SIZES = {"single": 1, "batch100": 100, "batch1000": 1000}


def event(index: int) -> dict[str, Any]:
    """A typical audit event (about 400 bytes): every structured block, a small context."""
    return {
        "actor": {
            "id": f"user-__SEQ__-{index}",
            "type": "user",
            "name": "Ada Lovelace",
            "email": "ada@example.com",
        },
        "action": {"name": "document.Updated"},
        "resource": {"type": "document", "id": f"doc-__SEQ__-{index}", "name": "Q3 plan"},
        "timestamp": "2026-01-05T10:00:00.250Z",
        "result": {"success": True, "code": "ok"},
        "context": {"ip": "203.0.113.7", "session": "s-__SEQ__", "fields": ["title", "owner"]},
        "metadata": {"source": "bench", "attempt": 1},
    }


def template(name: str, *, keyed: bool = False) -> bytes:
    """The body template `name` (a key of SIZES), `__SEQ__` still in it.

    `keyed`: a batch's events carry their own `idempotency_key` (the idempotency path's cost;
    a single event's key is the `Idempotency-Key` header, which the driver sets).
    """
    size = SIZES[name]
    events = [event(i) for i in range(size)]
    if keyed:
        for index, item in enumerate(events):
            item["idempotency_key"] = f"bench-__SEQ__-{index}"
    body: object = events[0] if size == 1 else {"events": events}
    return orjson.dumps(body)


def write(folder: Path) -> dict[str, Path]:
    """Write the three templates under `folder`; name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in SIZES:
        path = folder / f"{name}.json"
        path.write_bytes(template(name))
        paths[name] = path
    return paths
