"""Open-loop load: requests start on a fixed schedule, whatever the answers take.

Each tick starts one request (a single event, or now and then a batch) in its own task, so a
stalled service does not slow the offered load (a closed loop would hide unavailability). Every
event carries a unique marker in `context.marker` and its own idempotency key (the
`Idempotency-Key` header for single events, `idempotency_key` in batch items). Some events are
invalid on purpose (missing field, foreign `tenant_id`, unknown key): they must be refused and
never stored.

Client policy (what a well-behaved SDK does): an ambiguous answer (no answer, reset, 5xx, 503,
batch item `sink_unavailable`), a 429 or a refused connection is retried with the same
idempotency key, with capped exponential backoff and Retry-After honoured, until the run's
retry deadline; any other 4xx is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import orjson

from audit_ingest.domain.keys import format_key
from tests.fault.ledger import (
    RETRIED,
    Attempt,
    EventSpec,
    ItemResult,
    Ledger,
    Outcome,
    content_hash,
)

BACKOFF_BASE = 0.25
BACKOFF_CAP = 4.0
RETRY_AFTER_CAP = 5.0
CONNECT_TIMEOUT = 5.0
KEEPALIVE_S = 1.0
WARM_UP_TIMEOUT = 60.0
JSON = "application/json"


@dataclass
class Targets:
    """Base URLs of the two functions; a restarted function gets a new one."""

    single: str
    batch: str


@dataclass(frozen=True)
class KeyRef:
    label: str
    secret: str
    tenant: str


@dataclass(frozen=True)
class LoadSpec:
    rate: float  # requests per second
    attempt_timeout: float  # client timeout of one request
    retry_window: float  # how long retries go on after the load stops
    max_seconds: float  # hard bound of the whole run (ticks and retries)
    batch_share: float = 0.04
    batch_size: int = 8
    invalid_share: float = 0.02
    mismatch_share: float = 0.01
    unknown_key_share: float = 0.01
    # Requests on the wire at once. A real client's connection pool is bounded too; without a
    # bound, a long stall (9 s per request at 100 req/s) piles up thousands of connections and
    # the generator itself melts down (its connects time out, the retries multiply).
    max_in_flight: int = 256
    seed: int = 0


@dataclass
class _Item:
    spec: EventSpec
    body: dict[str, Any]


@dataclass
class _Op:
    kind: str  # "single" | "batch"
    key: KeyRef
    items: list[_Item]
    pending: set[str] = field(default_factory=set)


class LoadGenerator:
    def __init__(
        self,
        ledger: Ledger,
        targets: Targets,
        keys: list[KeyRef],
        spec: LoadSpec,
        clock: Callable[[], float],
    ) -> None:
        if len(keys) < 2:
            raise ValueError("need at least two keys (tenants)")
        self.ledger = ledger
        self.targets = targets
        self.keys = keys
        self.spec = spec
        self.now = clock
        self.random = random.Random(spec.seed)
        self.deadline = spec.max_seconds
        self.max_lag = 0.0
        self.max_queue_wait = 0.0  # longest wait for a free slot (max_in_flight)
        self._slots = asyncio.Semaphore(spec.max_in_flight)
        self.tasks: set[asyncio.Task[None]] = set()
        self._seq = 0
        self._client: httpx.AsyncClient | None = None

    # -- the run ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, started_event: asyncio.Event | None = None) -> None:
        """Warm up, then start requests at `rate` until `stop`; let retries settle (bounded)."""
        # Idle connections are dropped well before the server's keep-alive
        # (HTTP_KEEPALIVE_SECONDS, 620 s) would close them: reusing one the server is closing is
        # a reset nobody caused. The expiry stays short: with 60 s, after a stall requests
        # waited up to 45 s in httpcore's pool before their first byte (`pool_wait_s`), the
        # server answering each in about a second. The price of 1 s: httpcore 1.0 decides an
        # idle connection has expired and closes it a moment later, so a request handed it
        # meanwhile, on a loop running late, reads from a socket its own pool closed
        # (`ClosedResourceError` in the attempt's cause chain; about one request in three
        # Redis-pause runs). Checks that allow no unanswered request leave those out, by that
        # cause (docs/reliability.md).
        limits = httpx.Limits(
            max_connections=None, max_keepalive_connections=256, keepalive_expiry=KEEPALIVE_S
        )
        timeout = httpx.Timeout(self.spec.attempt_timeout, connect=CONNECT_TIMEOUT)
        # trust_env=False: a proxy from the environment must never sit between the client and
        # the functions (loopback or the fault topology's addresses).
        async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as client:
            self._client = client
            await self._warm_up()
            if started_event is not None:
                started_event.set()
            started = self.now()
            self.ledger.load_started = started
            tick = 0
            while not stop.is_set() and self.now() < self.spec.max_seconds:
                due = started + tick / self.spec.rate
                delay = due - self.now()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        break
                else:
                    self.max_lag = max(self.max_lag, -delay)
                self._spawn(self._run_op(self._next_op()))
                tick += 1
            ended = self.now()
            self.ledger.load_ended = ended
            self.deadline = min(self.spec.max_seconds, ended + self.spec.retry_window)
            if self.tasks:
                grace = self.deadline - self.now() + self.spec.attempt_timeout + 5.0
                await asyncio.wait(set(self.tasks), timeout=max(grace, 1.0))
            for task in list(self.tasks):
                task.cancel()
            if self.tasks:
                await asyncio.wait(set(self.tasks), timeout=5.0)
        self._client = None

    async def _warm_up(self) -> None:
        """One single event and one batch per key, before the clock starts (all recorded).

        The first requests build the function's app, producer and key cache; without this the
        first second of every run measures start-up, not the fault.
        """
        ops = []
        for key in self.keys:
            ops.append(_Op("single", key, [self.new_event(key, "single")]))
            ops.append(_Op("batch", key, [self.new_event(key, "batch") for _ in range(2)]))
        await asyncio.wait_for(asyncio.gather(*(self._run_op(op) for op in ops)), WARM_UP_TIMEOUT)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- what to send -------------------------------------------------------------------
    def _valid_body(self, marker: str, seq: int) -> dict[str, Any]:
        return {
            "actor": {"id": f"user-{seq % 97}", "type": "user"},
            "action": {"name": "doc.viewed"},
            "resource": {"type": "doc", "id": f"doc-{seq}"},
            "result": {"success": True},
            "context": {"marker": marker, "seq": seq, "run": self.ledger.run},
        }

    def new_event(
        self, key: KeyRef, kind: str, *, invalid: str | None = None, tenant_override: str = ""
    ) -> _Item:
        """A fresh event (recorded in the ledger). `invalid`: "missing" | "mismatch"."""
        self._seq += 1
        marker = str(uuid.uuid4())
        body = self._valid_body(marker, self._seq)
        if invalid == "missing":
            del body["resource"]
        elif invalid == "mismatch":
            body["tenant_id"] = tenant_override
        spec = EventSpec(
            marker=marker,
            idempotency_key=f"fault-{marker}",
            tenant=key.tenant,
            key_label=key.label,
            kind=kind,
            expect_reject=invalid is not None,
            content=content_hash(body),
        )
        if kind == "batch":
            body["idempotency_key"] = spec.idempotency_key
        self.ledger.add_event(spec)
        return _Item(spec, body)

    def _next_op(self) -> _Op:
        roll = self.random.random()
        s = self.spec
        key = self.random.choice(self.keys)
        if roll < s.batch_share:
            bad = self.random.randrange(s.batch_size)
            items = [
                self.new_event(key, "batch", invalid="missing" if i == bad else None)
                for i in range(s.batch_size)
            ]
            return _Op("batch", key, items)
        roll -= s.batch_share
        if roll < s.invalid_share:
            return _Op("single", key, [self.new_event(key, "single", invalid="missing")])
        roll -= s.invalid_share
        if roll < s.mismatch_share:
            other = next(k for k in self.keys if k.tenant != key.tenant)
            item = self.new_event(key, "single", invalid="mismatch", tenant_override=other.tenant)
            return _Op("single", key, [item])
        roll -= s.mismatch_share
        if roll < s.unknown_key_share:
            stranger = KeyRef("unknown", format_key(secrets.token_bytes(32)), key.tenant)
            item = self.new_event(stranger, "single")
            item.spec.expect_reject = True  # valid body, but the key does not exist: 401
            return _Op("single", stranger, [item])
        return _Op("single", key, [self.new_event(key, "single")])

    # -- sending, with retries ----------------------------------------------------------
    async def _run_op(self, op: _Op) -> None:
        op.pending = {item.spec.marker for item in op.items}
        tries = 0
        while op.pending and self.now() < self.deadline:
            tries += 1
            items = [item for item in op.items if item.spec.marker in op.pending]
            attempt, retry_after = await self.send(op.kind, op.key, items)
            for result in attempt.items:
                if result.outcome not in RETRIED:
                    op.pending.discard(result.marker)
            if not op.pending:
                return
            backoff = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (tries - 1))
            pause = self.random.uniform(backoff / 2, backoff)
            if retry_after is not None:
                pause = max(pause, min(retry_after, RETRY_AFTER_CAP))
            pause = min(pause, max(0.0, self.deadline - self.now()))
            await asyncio.sleep(pause)

    async def send_event(self, key: KeyRef, item: _Item, *, stall: float = 0.0) -> Attempt:
        """One attempt for one single event, outside the schedule (probes); recorded.

        `stall`: send half the body, wait that long, then the rest: the request is surely in
        progress on the server meanwhile (a drain test needs one).
        """
        attempt, _ = await self.send("single", key, [item], stall=stall)
        return attempt

    async def send(
        self, kind: str, key: KeyRef, items: list[_Item], *, stall: float = 0.0
    ) -> tuple[Attempt, float | None]:
        """One HTTP attempt carrying `items`; recorded in the ledger."""
        client = self._client
        assert client is not None, "send() only while run() is going"
        headers = {"content-type": JSON, "x-api-key": key.secret}
        if kind == "single":
            url = f"{self.targets.single}/v1/events"
            headers["idempotency-key"] = items[0].spec.idempotency_key
            content = orjson.dumps(items[0].body)
        else:
            url = f"{self.targets.batch}/v1/events/batch"
            content = orjson.dumps({"events": [item.body for item in items]})
        markers = [item.spec.marker for item in items]
        queued = self.now()
        body: bytes | AsyncIterator[bytes] = content
        if stall > 0:
            body = _stalled(content, stall)
        async with self._slots:
            sent = self.now()
            self.max_queue_wait = max(self.max_queue_wait, sent - queued)
            return await self._post(client, kind, key, url, body, headers, markers, sent)

    async def _post(
        self,
        client: httpx.AsyncClient,
        kind: str,
        key: KeyRef,
        url: str,
        content: bytes | AsyncIterator[bytes],
        headers: dict[str, str],
        markers: list[str],
        sent: float,
    ) -> tuple[Attempt, float | None]:
        status: int | None = None
        error = ""
        retry_after: float | None = None
        handler_s: float | None = None
        opened: list[str] = []
        written: list[float] = []

        async def trace(event: str, _info: dict[str, Any]) -> None:
            if event == "connection.connect_tcp.started":
                opened.append(event)
            elif event == "http11.send_request_headers.started":
                written.append(self.now())

        try:
            response = await client.post(
                url, content=content, headers=headers, extensions={"trace": trace}
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            results = [ItemResult(m, Outcome.REFUSED, detail=type(exc).__name__) for m in markers]
            error = type(exc).__name__
        except httpx.TransportError as exc:  # sent, but no (complete) answer
            results = [ItemResult(m, Outcome.AMBIGUOUS, detail=type(exc).__name__) for m in markers]
            error = _causes(exc)
        else:
            status = response.status_code
            retry_after = _retry_after(response)
            results = _classify(kind, response, markers)
            handler_s = _handler_seconds(response)
        done = self.now()
        if handler_s is not None and handler_s > done - sent + 0.5:
            handler_s = None  # an idempotent replay: the stamp is the first attempt's
        attempt = Attempt(
            kind=kind,
            sent=sent,
            done=done,
            status=status,
            items=results,
            error=error,
            key_label=key.label,
            handler_s=handler_s,
            retry_after=retry_after,
            new_connection=bool(opened),
            pool_wait_s=round(written[0] - sent, 4) if written else None,
        )
        self.ledger.record(attempt)
        return attempt, retry_after


def _causes(exc: BaseException) -> str:
    """The error and what caused it, outermost first: httpx's error wraps httpcore's, which
    wraps the socket's (a peer's reset, an end of stream, a stream this side closed)."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 4:
        parts.append(f"{type(current).__name__}: {current}".removesuffix(": "))
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)[:300]


async def _stalled(content: bytes, stall: float) -> AsyncIterator[bytes]:
    half = len(content) // 2
    yield content[:half]
    await asyncio.sleep(stall)
    yield content[half:]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _handler_seconds(response: httpx.Response) -> float | None:
    """Seconds since the server stamped `received_at` (a 202's body), on this host's clock."""
    if response.status_code != 202:
        return None
    body = _body(response)
    stamp = body.get("received_at") if isinstance(body, dict) else None
    if not isinstance(stamp, str):
        return None
    try:
        received = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return round(time.time() - received.timestamp(), 4)


def _body(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def _classify(kind: str, response: httpx.Response, markers: list[str]) -> list[ItemResult]:
    status = response.status_code
    if status == 202 and kind == "single":
        body = _body(response)
        event_id = body.get("event_id") if isinstance(body, dict) else None
        if not isinstance(event_id, str):
            return [
                ItemResult(m, Outcome.AMBIGUOUS, detail="202 without event_id") for m in markers
            ]
        return [ItemResult(markers[0], Outcome.ACK, event_id)]
    if status == 202:
        return _classify_batch(response, markers)
    if status == 429:
        return [ItemResult(m, Outcome.THROTTLED, detail="429") for m in markers]
    if 400 <= status < 500:
        body = _body(response)
        code = ""
        if isinstance(body, dict):
            errors = body.get("errors") or []
            code = errors[0].get("code", "") if errors and isinstance(errors[0], dict) else ""
            code = code or str(body.get("type", "")).rsplit(":", 1)[-1]
        return [ItemResult(m, Outcome.REJECT, detail=f"{status} {code}") for m in markers]
    return [ItemResult(m, Outcome.AMBIGUOUS, detail=str(status)) for m in markers]


def _classify_batch(response: httpx.Response, markers: list[str]) -> list[ItemResult]:
    body = _body(response)
    entries = body.get("events") if isinstance(body, dict) else None
    if not isinstance(entries, list) or len(entries) != len(markers):
        return [ItemResult(m, Outcome.AMBIGUOUS, detail="unreadable batch 202") for m in markers]
    results = []
    for marker, entry in zip(markers, entries, strict=True):
        if entry.get("status") == "accepted" and isinstance(entry.get("event_id"), str):
            results.append(ItemResult(marker, Outcome.ACK, entry["event_id"]))
            continue
        codes = [e.get("code", "") for e in entry.get("errors") or [] if isinstance(e, dict)]
        if "sink_unavailable" in codes:
            results.append(ItemResult(marker, Outcome.AMBIGUOUS, detail="sink_unavailable"))
        else:
            results.append(ItemResult(marker, Outcome.REJECT, detail=",".join(codes)))
    return results


def monotonic_clock() -> Callable[[], float]:
    """Seconds since now, on the monotonic clock (the run's time base)."""
    origin = time.monotonic()
    return lambda: time.monotonic() - origin
