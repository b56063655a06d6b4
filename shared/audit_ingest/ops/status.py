"""`audit-ingest stack status`: is each dependency reachable, how fast, and is it healthy?

- PostgreSQL: `SELECT 1`, and whether every migration shipped with this version is applied;
- Redis: `PING`;
- Kafka: the brokers, and for the main and dead-letter topics each partition's leader and
  in-sync replicas against its replicas (under-replicated and leaderless partitions);
- the ingest service's `GET /ready`, when a URL is given (`INGEST_URL`).

The checks run in parallel, each bounded by the timeout, so one dead service costs one
timeout, not one per check.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import psycopg
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from redis import Redis
from redis.exceptions import RedisError

from audit_ingest.adapters.migrations import migration_files
from audit_ingest.ops.kafka_client import client_config
from audit_ingest.settings import Settings

State = Literal["ok", "degraded", "down", "skipped"]


@dataclass
class Check:
    name: str
    state: State
    detail: str
    latency_ms: float | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    # More lines for people (the JSON form has the same in `facts`).
    notes: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.state in ("ok", "skipped")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "detail": self.detail,
            **self.facts,
        }


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def check_postgres(conninfo: str, timeout: float) -> Check:
    shipped = [version for version, _ in migration_files()]
    started = time.perf_counter()
    try:
        with psycopg.connect(conninfo, connect_timeout=max(1, round(timeout))) as conn:
            conn.execute("SELECT 1").fetchone()
            latency = _elapsed_ms(started)
            table = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
            applied: set[str] = set()
            if table is not None and table[0] is not None:
                applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    except psycopg.Error as exc:
        return Check("postgres", "down", f"unreachable: {_first_line(exc)}")
    pending = [version for version in shipped if version not in applied]
    facts = {"migrations_applied": len(shipped) - len(pending), "migrations_pending": pending}
    summary = f"SELECT 1 ok; migrations {len(shipped) - len(pending)}/{len(shipped)} applied"
    if pending:
        return Check(
            "postgres",
            "degraded",
            f"{summary}; pending: {', '.join(pending)} (run `audit-ingest migrate`)",
            latency,
            facts,
        )
    return Check("postgres", "ok", summary, latency, facts)


def check_redis(url: str, timeout: float) -> Check:
    client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    started = time.perf_counter()
    try:
        client.ping()
        latency = _elapsed_ms(started)
    except (RedisError, OSError) as exc:
        return Check("redis", "down", f"unreachable: {_first_line(exc)}")
    finally:
        client.close()
    return Check("redis", "ok", "PING ok", latency)


def check_kafka(settings: Settings, timeout: float) -> Check:
    errors: list[str] = []
    admin = AdminClient(client_config(settings, error_cb=lambda error: errors.append(str(error))))
    topics = [settings.kafka_topic, settings.kafka_dlq_topic]
    started = time.perf_counter()
    try:
        metadata = admin.list_topics(timeout=timeout)
        latency = _elapsed_ms(started)
    except KafkaException as exc:
        why = errors[-1] if errors else _first_line(exc)
        return Check(
            "kafka",
            "down",
            f"no broker answered at {settings.kafka_bootstrap_servers} within {timeout:g} s: {why}",
        )
    brokers = sorted(metadata.brokers)
    problems: list[str] = []
    down = False
    described: dict[str, Any] = {}
    lines: list[str] = []
    for name in topics:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None or not topic.partitions:
            problems.append(f"topic {name} is missing (run `audit-ingest topics create`)")
            down = True
            described[name] = None
            continue
        partitions: list[dict[str, Any]] = []
        under, offline = 0, 0
        for number in sorted(topic.partitions):
            part = topic.partitions[number]
            replicas, isrs = list(part.replicas), list(part.isrs)
            leader = int(part.leader)
            if leader < 0:
                offline += 1
            if len(isrs) < len(replicas):
                under += 1
            partitions.append(
                {"partition": number, "leader": leader, "replicas": replicas, "isr": isrs}
            )
        described[name] = {
            "partitions": partitions,
            "under_replicated": under,
            "offline": offline,
        }
        lines.append(
            f"{name}: {len(partitions)} partition(s), {under} under-replicated, "
            f"{offline} without a leader; "
            + " ".join(
                f"p{p['partition']}:leader={p['leader']},isr={len(p['isr'])}/{len(p['replicas'])}"
                for p in partitions
            )
        )
        if offline:
            problems.append(f"{name}: {offline} partition(s) without a leader")
            down = True
        elif under:
            problems.append(f"{name}: {under} under-replicated partition(s)")
    facts = {"brokers": brokers, "topics": described}
    detail = "; ".join([f"{len(brokers)} broker(s) {brokers}", *problems])
    state: State = "down" if down else ("degraded" if problems else "ok")
    return Check("kafka", state, detail, latency, facts, lines)


def check_ingest(url: str | None, timeout: float) -> Check:
    if not url:
        return Check("ingest", "skipped", "INGEST_URL not set")
    target = url.rstrip("/") + "/ready"
    if not target.startswith(("http://", "https://")):
        return Check("ingest", "down", f"INGEST_URL must be http(s): {url}")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:  # noqa: S310 (checked)
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return Check("ingest", "down", f"{target} unreachable: {_first_line(exc)}")
    latency = _elapsed_ms(started)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    facts: dict[str, Any] = {"url": target, "http_status": status}
    if isinstance(document, dict):
        facts["ready"] = document
    shown = orjson.dumps(document).decode() if document is not None else body[:200].decode()
    if status == 200:
        return Check("ingest", "ok", f"GET {target} -> 200 {shown}", latency, facts)
    return Check("ingest", "down", f"GET {target} -> {status} {shown}", latency, facts)


def stack_status(settings: Settings, *, ingest_url: str | None, timeout: float) -> list[Check]:
    """Every check, run in parallel; in a fixed order."""
    checks: list[Callable[[], Check]] = [
        lambda: check_postgres(settings.database_url.get_secret_value(), timeout),
        lambda: check_redis(settings.redis_url.get_secret_value(), timeout),
        lambda: check_kafka(settings, timeout),
        lambda: check_ingest(ingest_url, timeout),
    ]
    with ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="status") as pool:
        futures = [pool.submit(check) for check in checks]
        return [future.result() for future in futures]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def render_checks(checks: list[Check]) -> list[str]:
    """One line per check (name, state, latency, detail), then each check's notes indented."""
    lines = []
    for check in checks:
        latency = "-" if check.latency_ms is None else f"{check.latency_ms:.1f} ms"
        lines.append(f"{check.name:<9} {check.state:<8} {latency:>9}  {check.detail}")
        lines += [f"{'':<9} {note}" for note in check.notes]
    return lines
