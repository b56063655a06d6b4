"""The ledger: every event the load generator made, and every HTTP attempt that carried it.

An *event* is one audit event with a unique marker (a UUID in `context.marker`), its own
idempotency key and the tenant of the key it is sent with. An *attempt* is one HTTP request: a
single event, or a batch of several. Each attempt records, per event it carried, one outcome:

- ``ACK``: 202 and an `event_id` (the event must be in the topic);
- ``REJECT``: a 4xx other than 429 (it must not be, unless an earlier attempt was ambiguous);
- ``AMBIGUOUS``: no answer (timeout, reset), a 5xx or 503, or a batch item `sink_unavailable`:
  the event may or may not have been written; retried with the same idempotency key;
- ``THROTTLED``: 429, nothing written; retried after Retry-After;
- ``REFUSED``: the connection was refused (nothing was sent); retried.

Times are seconds since the run's start (monotonic clock).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson


class Outcome(enum.StrEnum):
    ACK = "ACK"
    REJECT = "REJECT"
    AMBIGUOUS = "AMBIGUOUS"
    THROTTLED = "THROTTLED"
    REFUSED = "REFUSED"


# Outcomes after which the event may be in the topic.
POSSIBLY_WRITTEN = frozenset({Outcome.ACK, Outcome.AMBIGUOUS})
RETRIED = frozenset({Outcome.AMBIGUOUS, Outcome.THROTTLED, Outcome.REFUSED})


def content_hash(event: dict[str, Any]) -> str:
    """Digest of the fields the service stores unchanged (what I5 compares)."""
    picked = {
        name: event.get(name) for name in ("actor", "action", "resource", "result", "context")
    }
    return hashlib.sha256(orjson.dumps(picked, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


@dataclass(slots=True)
class EventSpec:
    """One event as generated (what the verifier expects to find, or not)."""

    marker: str
    idempotency_key: str
    tenant: str  # the tenant of the key it is sent with
    key_label: str
    kind: str  # "single" | "batch"
    expect_reject: bool  # invalid on purpose: a 202 or a record of it is a violation
    content: str  # content_hash of the body as sent


@dataclass(slots=True)
class ItemResult:
    marker: str
    outcome: Outcome
    event_id: str | None = None
    detail: str = ""


@dataclass(slots=True)
class Attempt:
    kind: str  # "single" | "batch"
    sent: float
    done: float
    status: int | None  # None: no HTTP answer
    items: list[ItemResult]
    error: str = ""
    key_label: str = ""
    # For a 202: seconds from the server's `received_at` (its clock, same host) to the client
    # holding the answer; excludes time queued before the handler started.
    handler_s: float | None = None
    retry_after: float | None = None  # the answer's Retry-After header, if any
    # Whether the attempt opened its connection (False: reused a pooled one; None: unknown),
    # to tell a reset on a fresh connection from one on a pooled connection.
    new_connection: bool | None = None
    # Seconds from `sent` until the request's first byte went out (the client's own pool and
    # connect); None when nothing was written.
    pool_wait_s: float | None = None


@dataclass
class Ledger:
    run: str
    events: dict[str, EventSpec] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    load_started: float = 0.0
    load_ended: float = 0.0

    def add_event(self, spec: EventSpec) -> None:
        self.events[spec.marker] = spec

    def record(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)

    def mark(self, name: str, at: float) -> None:
        self.marks[name] = at

    def attempts_by_marker(self) -> dict[str, list[tuple[Attempt, ItemResult]]]:
        out: dict[str, list[tuple[Attempt, ItemResult]]] = {m: [] for m in self.events}
        for attempt in sorted(self.attempts, key=lambda a: a.sent):
            for item in attempt.items:
                out.setdefault(item.marker, []).append((attempt, item))
        return out

    # -- persistence (JSONL: one header line, then events, then attempts) ------------------
    def dump(self, path: Path) -> None:
        with path.open("wb") as out:
            header = {
                "type": "run",
                "run": self.run,
                "marks": self.marks,
                "load_started": self.load_started,
                "load_ended": self.load_ended,
            }
            out.write(orjson.dumps(header) + b"\n")
            for spec in self.events.values():
                out.write(orjson.dumps({"type": "event", **asdict(spec)}) + b"\n")
            for attempt in self.attempts:
                out.write(orjson.dumps({"type": "attempt", **asdict(attempt)}) + b"\n")

    @classmethod
    def load(cls, path: Path) -> Ledger:
        ledger = cls(run="")
        for row in _rows(path.read_bytes().splitlines()):
            kind = row.pop("type")
            if kind == "run":
                ledger.run = row["run"]
                ledger.marks = row["marks"]
                ledger.load_started = row["load_started"]
                ledger.load_ended = row["load_ended"]
            elif kind == "event":
                ledger.add_event(EventSpec(**row))
            else:
                items = [
                    ItemResult(i["marker"], Outcome(i["outcome"]), i["event_id"], i["detail"])
                    for i in row.pop("items")
                ]
                ledger.record(Attempt(items=items, **row))
        return ledger


def _rows(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.strip():
            yield orjson.loads(line)
