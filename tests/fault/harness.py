"""One fault run: fresh topics, keys and function processes; load + fault; heal; verify.

A run goes: create the run's topics (RF 3, min.insync.replicas 2, unclean election off) and
keys; start `ingest_event` and `ingest_batch` with the functions-framework CLI; start the load;
let the scenario inject and heal its fault while the load goes on; stop the load and let
retries settle; wait until the topic's end offsets are stable; read every record; verify. The
ledger, the records and a JSON summary are kept under the results folder for replay.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from devstack.cluster import ClusterStack
from devstack.netns import Topology, unavailable_reason

from audit_ingest.adapters.kafka_admin import TopicSpec, create_topics
from audit_ingest.adapters.key_admin import create_key
from tests.fault.ledger import Attempt, Ledger, Outcome
from tests.fault.loadgen import KeyRef, LoadGenerator, LoadSpec, Targets, monotonic_clock
from tests.fault.profiles import Profile
from tests.fault.profiles import current as current_profile
from tests.fault.verifier import Record, Verdict, read_topic, verify, wait_stable_offsets
from tests.functions import FunctionProcess, kill_function, start_function, stop_function

STACK_VARS = ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
TENANTS = 8
TOPIC_CONFIG = {"min.insync.replicas": "2", "unclean.leader.election.enable": "false"}


# Namespaces of the two functions in the stack's topology (when it has one).
FUNCTION_NODES = {"ingest-event": "fe", "ingest-batch": "fb"}


def _established_to(host: str, port: int) -> int:
    """ESTABLISHED TCP connections of this network namespace to `host`:`port` (IPv4)."""
    address = int.from_bytes(socket.inet_aton(host), sys.byteorder)
    remote = f"{address:08X}:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return 0
    return sum(1 for line in lines if (f := line.split())[2] == remote and f[3] == "01")


@dataclass
class Functions:
    """The run's two function processes (gunicorn master + one uvicorn worker each).

    With a network topology, each function runs in its own namespace (`fe`, `fb`) and
    listens on that namespace's address.
    """

    env: dict[str, str]
    log_dir: Path
    network: Topology | None = None
    targets: Targets = field(default_factory=lambda: Targets("", ""))
    single: FunctionProcess | None = None
    batch: FunctionProcess | None = None
    incarnations: int = 0
    logs: list[Path] = field(default_factory=list)

    def _start(self, target: str, service: str) -> FunctionProcess:
        self.incarnations += 1
        folder = self.log_dir / f"{service}-{self.incarnations}"
        folder.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "K_SERVICE": service}
        if self.network is None:
            process = start_function(target, env, folder)
        else:
            node = self.network.add_node(FUNCTION_NODES[service])
            prefix = self.network.exec_prefix(node.name)
            process = start_function(target, env, folder, host=node.address, exec_prefix=prefix)
        self.logs.append(process.log)
        return process

    def start(self) -> None:
        with ThreadPoolExecutor(2) as pool:
            single = pool.submit(self._start, "ingest_event", "ingest-event")
            batch = pool.submit(self._start, "ingest_batch", "ingest-batch")
            self.single, self.batch = single.result(), batch.result()
        self.targets.single, self.targets.batch = self.single.url, self.batch.url

    def restart_single(self) -> None:
        self.single = self._start("ingest_event", "ingest-event")
        self.targets.single = self.single.url

    def kill_single(self) -> None:
        """SIGKILL the whole function (worker and master at once), as a crashed pod.

        Returns once every process is gone (the worker is not our child: it is polled), so
        the listening socket is closed and nothing more can connect to it, and once the
        client's kernel has seen every connection to it end (no longer ESTABLISHED): a
        kept-alive connection is then not reused. Across namespaces the teardown takes a hop
        through the hub, so "gone" and "seen gone" can be milliseconds apart.
        """
        assert self.single is not None
        kill_function(self.single)
        server = urlsplit(self.single.url)
        deadline = time.monotonic() + 2
        while _established_to(server.hostname or "", server.port or 0):
            if time.monotonic() > deadline:
                break
            time.sleep(0.002)

    def terminate_single(self, timeout: float = 60.0) -> int:
        assert self.single is not None
        return stop_function(self.single, timeout)

    def stop(self) -> None:
        for function in (self.single, self.batch):
            if function is not None:
                stop_function(function, 30)

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())


@dataclass
class Run:
    """What a scenario may touch during its run."""

    name: str
    profile: Profile
    stack: ClusterStack
    database_url: str
    topic: str
    dlq: str
    keys: list[KeyRef]
    key_ids: dict[str, str]
    functions: Functions
    ledger: Ledger
    gen: LoadGenerator
    clock: Callable[[], float]
    out_dir: Path
    notes: dict[str, Any] = field(default_factory=dict)
    origin: float = 0.0  # clock time the load started (after the warm-up)

    def at(self, offset: float) -> float:
        """Clock time `offset` seconds into the load (profile times are relative to it)."""
        return self.origin + offset

    def mark(self, name: str) -> float:
        at = self.clock()
        self.ledger.mark(name, at)
        return at

    async def sleep_until(self, at: float) -> None:
        delay = at - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)

    @staticmethod
    async def blocking(call: Callable[[], Any]) -> Any:
        return await asyncio.to_thread(call)


Scenario = Callable[[Run], Awaitable[None]]


@dataclass
class RunResult:
    name: str
    fault: str
    verdict: Verdict
    run: Run
    seconds: float
    records: list[Record] = field(default_factory=list)  # every record read back

    def row(self) -> dict[str, Any]:
        v = self.verdict
        return {
            "run": self.name,
            "fault": self.fault,
            "sent": v.sent_requests,
            "events": v.events,
            "acked": v.acked,
            "rejected": v.rejected,
            "ambiguous": v.ambiguous,
            "lost": v.lost,
            "phantoms": v.phantoms,
            "written_rejections": v.written_rejections,
            "duplicates": v.duplicates,
            "max_unavailability_s": round(v.max_unavailability, 1),
            "p50_ms": round(v.p50_ms, 1),
            "p99_ms": round(v.p99_ms, 1),
            "seconds": round(self.seconds, 1),
        }


def acked(attempt: Attempt) -> bool:
    return any(item.outcome is Outcome.ACK for item in attempt.items)


def within(attempt: Attempt, start: float, end: float) -> bool:
    """Sent after `start` and answered before `end`."""
    return attempt.sent >= start and attempt.done <= end


def check_retry_after(result: RunResult) -> list[Attempt]:
    """Every 503 of the run carries Retry-After (asserted); returns the 503s, counted in notes."""
    unavailable = [a for a in result.run.ledger.attempts if a.status == 503]
    missing = [a for a in unavailable if a.retry_after is None]
    assert not missing, f"{len(missing)} 503(s) without Retry-After"
    result.run.notes["answers_503"] = len(unavailable)
    return unavailable


RunFault = Callable[..., RunResult]


def isolation_unavailable() -> str | None:
    """Why brokers and functions cannot get network namespaces here (None: they can)."""
    if os.environ.get("FAULT_NETNS", "1") == "0":
        return "FAULT_NETNS=0: everything on loopback, no namespaces"
    return unavailable_reason()


def reps(fault: str) -> list[Any]:
    """One parameter per repetition; skipped when the profile does not run this fault."""
    profile = current_profile()
    skip = [] if profile.runs(fault) else [pytest.mark.skip(f"not in the {profile.name} profile")]
    return [pytest.param(i, id=f"rep{i}", marks=skip) for i in range(profile.reps)]


# Every run of this session, in order: test_faults.py appends, the conftest's terminal summary
# tabulates them.
RESULTS: list[RunResult] = []


def function_env(stack: ClusterStack, profile: Profile, topic: str, dlq: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STACK_VARS and k != "PYTHONPATH"}
    env.update(stack.env)
    env.update(
        {
            "KAFKA_TOPIC": topic,
            "KAFKA_DLQ_TOPIC": dlq,
            "KAFKA_DELIVERY_TIMEOUT_MS": str(profile.delivery_timeout_ms),
            "KEY_CACHE_TTL_SECONDS": str(profile.key_cache_ttl),
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def prepare(
    name: str,
    profile: Profile,
    stack: ClusterStack,
    out_dir: Path,
    *,
    env_overrides: dict[str, str] | None = None,
    attempt_timeout: float | None = None,
) -> Run:
    """Topics, keys and function processes for one run (the load is not started yet)."""
    run_id = f"{name}-{uuid.uuid4().hex[:8]}"
    topic, dlq = f"fault.{run_id}", f"fault.{run_id}.dlq"
    create_topics(
        stack.kafka.bootstrap,
        [
            TopicSpec(topic, profile.partitions, 3, TOPIC_CONFIG),
            TopicSpec(dlq, profile.partitions, 3, TOPIC_CONFIG),
        ],
    )
    stack.kafka.wait_healthy(timeout=60)
    database_url = stack.postgres.url
    keys: list[KeyRef] = []
    key_ids: dict[str, str] = {}
    for index in range(TENANTS):
        issued = create_key(
            database_url,
            tenant_id=uuid.uuid4(),
            name=f"fault-{index}",
            scopes=("events:write",),
            rate_limit=1_000_000,
            expires_at=None,
        )
        label = f"k{index}"
        keys.append(KeyRef(label, issued.secret, issued.stored.tenant_id))
        key_ids[label] = issued.stored.id
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**function_env(stack, profile, topic, dlq), **(env_overrides or {})}
    functions = Functions(env, out_dir / "functions", stack.network)
    functions.start()
    clock = monotonic_clock()
    ledger = Ledger(run=run_id)
    spec = LoadSpec(
        rate=profile.rate,
        attempt_timeout=attempt_timeout or profile.attempt_timeout,
        retry_window=profile.retry_window,
        max_seconds=profile.test_timeout - 60,
        seed=zlib.crc32(run_id.encode()),
    )
    gen = LoadGenerator(ledger, functions.targets, keys, spec, clock)
    return Run(
        name=name,
        profile=profile,
        stack=stack,
        database_url=database_url,
        topic=topic,
        dlq=dlq,
        keys=keys,
        key_ids=key_ids,
        functions=functions,
        ledger=ledger,
        gen=gen,
        clock=clock,
        out_dir=out_dir,
    )


async def _drive(run: Run, scenario: Scenario) -> None:
    stop, started = asyncio.Event(), asyncio.Event()
    load = asyncio.create_task(run.gen.run(stop, started))
    try:
        waiting = asyncio.create_task(started.wait())
        await asyncio.wait({waiting, load}, return_when=asyncio.FIRST_COMPLETED)
        if load.done():
            waiting.cancel()
            load.result()  # the warm-up failed: raise its error
        run.origin = run.mark("load_start")
        await scenario(run)
        run.mark("healed")
        end = max(run.at(run.profile.load_seconds), run.clock() + run.profile.post_heal)
        await run.sleep_until(end)
    finally:
        stop.set()
        await load


def execute(run: Run, scenario: Scenario, fault: str) -> RunResult:
    """Drive the load and the scenario, then verify everything that reached the topic."""
    began = time.monotonic()
    try:
        asyncio.run(_drive(run, scenario))
    finally:
        run.functions.stop()
    run.mark("load_done")
    run.stack.kafka.wait_healthy(timeout=120)
    ends = wait_stable_offsets(
        run.stack.kafka.bootstrap, run.topic, quiet=run.profile.stable_quiet, timeout=120
    )
    records = read_topic(run.stack.kafka.bootstrap, run.topic, ends, timeout=120)
    verdict = verify(run.ledger, records)
    result = RunResult(run.name, fault, verdict, run, time.monotonic() - began, records)
    _save(result, records)
    return result


def _save(result: RunResult, records: list[Any]) -> None:
    run = result.run
    run.ledger.dump(run.out_dir / "ledger.jsonl")
    with (run.out_dir / "records.jsonl").open("wb") as out:
        for record in records:
            out.write(orjson.dumps(record.as_json()) + b"\n")
    save_summary(result)


def save_summary(result: RunResult) -> None:
    run = result.run
    summary = {
        **result.row(),
        "profile": run.profile.name,
        "topic": run.topic,
        "marks": run.ledger.marks,
        "load_started": run.ledger.load_started,
        "load_ended": run.ledger.load_ended,
        "loadgen_max_lag_s": round(run.gen.max_lag, 3),
        "loadgen_max_queue_wait_s": round(run.gen.max_queue_wait, 3),
        "notes": run.notes,
        "verdict": result.verdict.summary(),
    }
    (run.out_dir / "summary.json").write_text(
        orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode()
    )
