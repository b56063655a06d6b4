"""Disk faults: a broker's log directory and PostgreSQL's data directory fill up.

Each broker's log directory and PostgreSQL's data sit on a small filesystem of their own (a
tmpfs with `size=`, mounted by devstack's ClusterStack when it runs isolated, as root). A
fault writes a filler file until the filesystem has no block left, holds it, then deletes it.
Expected: 503 with Retry-After where an event cannot be stored, never a 202 for an event that
is not stored (the verifier's I1), and recovery when space returns. Without root, skipped.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from functools import partial
from typing import Any

import psycopg
import pytest
from devstack.cluster import ClusterStack, SmallDisk
from devstack.service import Service

from audit_ingest.adapters.key_admin import create_key
from tests.fault import profiles
from tests.fault.harness import (
    Run,
    RunFault,
    acked,
    check_retry_after,
    isolation_unavailable,
    reps,
    within,
)
from tests.fault.ledger import Attempt
from tests.fault.loadgen import KeyRef

PROFILE = profiles.current()
pytestmark = [pytest.mark.fault, pytest.mark.timeout(PROFILE.test_timeout)]


@pytest.fixture
def disks(request: pytest.FixtureRequest) -> ClusterStack:
    """The stack, when its brokers and PostgreSQL have small filesystems of their own.

    Skipped (with the reason) before the stack starts: list this fixture before `run_fault`.
    """
    reason = isolation_unavailable()
    if reason is not None:
        pytest.skip(f"no small filesystems (tmpfs mounts need the isolated stack): {reason}")
    stack: ClusterStack = request.getfixturevalue("healthy")
    assert stack.disks
    return stack


def new_key(run: Run, name: str) -> KeyRef:
    issued = create_key(
        run.database_url,
        tenant_id=uuid.uuid4(),
        name=name,
        scopes=("events:write",),
        rate_limit=1_000_000,
        expires_at=None,
    )
    return KeyRef(name, issued.secret, issued.stored.tenant_id)


# How a full tmpfs can reach a Kafka broker (the first seen in brokers' logs here, the second
# in a JVM on a full tmpfs here, the third is HotSpot's fatal-error report):
# - a write (segment append, checkpoint): java.io.IOException "No space left on device";
# - the first touch of a page of a memory-mapped index. Kafka sizes index files with
#   setLength (sparse: tmpfs allocates a page when it is first touched), so the touch gets
#   SIGBUS, which HotSpot raises as java.lang.InternalError "a fault occurred in a recent
#   unsafe memory access operation" (measured with JDK 17 on a full 2 MB tmpfs). Rare (the
#   index's page must run out before the segment's); most likely why one CI run's broker
#   log held no "No space left on device" while only that sign counted;
# - SIGBUS outside such an access kills the JVM, which prints it to its console.
FULL_DISK_SIGNS = ("No space left on device", "unsafe memory access operation", "SIGBUS")


def full_disk_signs(log: str) -> int:
    """How many lines of a broker's log show a write refused by a full filesystem."""
    return sum(log.count(sign) for sign in FULL_DISK_SIGNS)


def last_errors(log: str, count: int = 8) -> str:
    """The last ERROR / FATAL lines of a Kafka log and the exception line under each."""
    lines = log.splitlines()
    picked = [
        "\n".join(lines[i : i + 2])
        for i, line in enumerate(lines)
        if " ERROR " in line or " FATAL " in line
    ]
    return "\n".join(picked[-count:]) or "(none)"


WAL_SWITCHES = 8  # min_wal_size (80 MB) keeps at most 5 recycled 16 MB segments


def wait_stopped(service: Service, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while service.is_running() and time.monotonic() < deadline:
        time.sleep(0.1)


async def try_create_key(run: Run, name: str) -> str:
    try:
        await run.blocking(partial(new_key, run, name))
    except Exception as exc:  # a full disk may refuse the insert: recorded, not raised
        return f"{type(exc).__name__}: {exc}"[:200]
    return "created"


def switch_wal(database_url: str) -> str:
    """`pg_switch_wal()`: the next WAL record needs a new segment file (16 MB)."""
    try:
        with psycopg.connect(database_url, connect_timeout=3, autocommit=True) as conn:
            row = conn.execute("select pg_switch_wal()::text").fetchone()
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return f"switched at {row[0] if row else '?'}"


@pytest.mark.parametrize("rep", reps("broker_disk_full"))
def test_broker_disk_full(disks: ClusterStack, run_fault: RunFault, rep: int) -> None:
    """The log directory of partition 0's leader fills up; space returns later.

    Kafka takes a log directory that fails a write offline; with its only directory offline
    the broker stops. The other two keep min.insync.replicas, so acknowledged writes go on
    there after the failover. When space returns, the broker is started again (if it
    stopped) and catches up.
    """
    seconds = PROFILE.seconds("broker_disk_full")

    async def scenario(run: Run) -> None:
        await run.sleep_until(run.at(PROFILE.fault_at))
        kafka = run.stack.kafka
        leader = await run.blocking(lambda: kafka.partition_leader(run.topic, 0))
        node = kafka.node(leader)
        disk = node.disk
        assert isinstance(disk, SmallDisk)
        run.notes["full_broker"] = leader
        run.mark("fill")
        run.notes["filler_bytes"] = await run.blocking(disk.fill)
        run.mark("full")
        try:
            await asyncio.sleep(seconds)
        finally:
            run.notes["broker_running_when_full"] = node.is_running()
            run.mark("free")
            disk.free()
        if not node.is_running():
            await run.blocking(partial(kafka.start_nodes, [leader]))
            run.mark("restarted")

    result = run_fault("broker_disk_full", scenario)
    marks = result.run.ledger.marks
    broker = disks.kafka.node(result.run.notes["full_broker"])
    logs = [path.read_text(errors="replace") for path in (broker.node.server_log, broker.log_file)]
    result.run.notes["full_disk_signs_in_broker_log"] = sum(map(full_disk_signs, logs))
    assert result.run.notes["full_disk_signs_in_broker_log"], (
        "the broker never hit the full disk; its last errors:\n" + last_errors(logs[0])
    )
    check_retry_after(result)
    after = [a for a in result.run.ledger.attempts if a.sent > marks["free"] and acked(a)]
    assert after, "no 202 after space returned"


@pytest.mark.parametrize("rep", reps("postgres_disk_full"))
def test_postgres_disk_full(disks: ClusterStack, run_fault: RunFault, rep: int) -> None:
    """PostgreSQL's filesystem fills up; space returns later.

    Events never go to PostgreSQL, so cached keys keep getting 202. A key not yet cached is
    looked up (and stamped `last_used_at`): 202 if PostgreSQL still answers, else 503 +
    Retry-After; never 401/403 or another 5xx. Once space returns, keys can be created and
    used again.
    """
    seconds = PROFILE.seconds("postgres_disk_full")
    probes: list[tuple[str, Attempt]] = []
    unanswered: list[tuple[KeyRef, Any]] = []  # probe events still without a final answer

    async def probe_uncached(run: Run, key: KeyRef, phase: str) -> None:
        for _ in range(2):  # a new event each: a replay would not look the key up
            item = run.gen.new_event(key, "single")
            attempt = await run.gen.send_event(key, item)
            probes.append((phase, attempt))
            if attempt.status != 202:
                unanswered.append((key, item))
            await asyncio.sleep(0.3)

    async def resolve(run: Run, key: KeyRef, item: Any) -> Attempt:
        """Send `item` again (as a client would) until it gets a final answer (bounded)."""
        for _ in range(40):  # the pool reconnects within a few seconds
            attempt = await run.gen.send_event(key, item)
            if attempt.status is not None and attempt.status < 500 and attempt.status != 429:
                break
            await asyncio.sleep(0.5)
        return attempt

    async def scenario(run: Run) -> None:
        fresh = await run.blocking(partial(new_key, run, "uncached"))
        fresher = await run.blocking(partial(new_key, run, "uncached-2"))  # for phase 2
        await run.sleep_until(run.at(PROFILE.fault_at))
        disk = run.stack.postgres.disk
        assert isinstance(disk, SmallDisk)
        run.mark("fill")
        run.notes["filler_bytes"] = await run.blocking(disk.fill)
        run.mark("full")
        try:
            # Reads and in-page updates need no new block: PostgreSQL still answers.
            await probe_uncached(run, fresh, "full")
            run.notes["create_key_while_full"] = await try_create_key(run, "while-full")
            # A new WAL segment does need space: switch to the next one and write, until a
            # write fails (recycled segments, already allocated, may come first).
            run.mark("wal_switch")
            for switches in range(1, WAL_SWITCHES + 1):
                run.notes["wal_switch"] = await run.blocking(partial(switch_wal, run.database_url))
                created = await try_create_key(run, f"after-switch-{switches}")
                run.notes["create_key_after_wal_switch"] = created
                run.notes["wal_switches"] = switches
                if created != "created":
                    break
            # PostgreSQL stops on the failed WAL write (its checkpointer PANICs).
            await run.blocking(partial(wait_stopped, run.stack.postgres, 5.0))
            run.notes["postgres_running_after_wal_switch"] = run.stack.postgres.is_running()
            phase = "stopped" if not run.stack.postgres.is_running() else "full"
            await probe_uncached(run, fresher, phase)
            await run.sleep_until(run.ledger.marks["full"] + seconds)
        finally:
            run.notes["postgres_running_when_full"] = run.stack.postgres.is_running()
            run.mark("free")
            disk.free()
        if not run.stack.postgres.is_running():
            await run.blocking(run.stack.postgres.start)
            run.mark("restarted")
        later = await run.blocking(partial(new_key, run, "created-after"))
        probes.append(("after", await resolve(run, later, run.gen.new_event(later, "single"))))
        for key, item in unanswered:
            probes.append(("retried", await resolve(run, key, item)))

    result = run_fault("postgres_disk_full", scenario)
    marks = result.run.ledger.marks
    full = [a for phase, a in probes if phase == "full"]
    result.run.notes["uncached_probes_while_full"] = [a.status for a in full]
    assert all(a.status in (202, 503) for a in full), [(a.status, a.error) for a in full]
    # Once the full disk has stopped PostgreSQL, a key not cached gets 503 (never 401).
    stopped = [a for phase, a in probes if phase == "stopped"]
    result.run.notes["uncached_probes_while_stopped"] = [a.status for a in stopped]
    assert all(a.status == 503 for a in stopped), [(a.status, a.error) for a in stopped]
    assert [a.status for phase, a in probes if phase == "after"] == [202]
    retried = [a.status for phase, a in probes if phase == "retried"]
    result.run.notes["uncached_probes_retried_after"] = retried
    assert all(status == 202 for status in retried), retried
    during = [a for a in result.run.ledger.attempts if within(a, marks["full"], marks["free"])]
    # Keys that exist are never refused (unknown keys get 401 while PostgreSQL answers).
    known = [a for a in during if a.key_label != "unknown"]
    assert not [a for a in known if a.status in (401, 403)], "401/403 while the disk was full"
    cached = [a for a in during if a.key_label.startswith("k")]
    assert cached and all(a.status in (202, 400) for a in cached), sorted(
        {a.status for a in cached}, key=str
    )
    server_errors = [a for a in result.run.ledger.attempts if (a.status or 0) >= 500]
    assert all(a.status == 503 for a in server_errors), {a.status for a in server_errors}
    check_retry_after(result)


# WRITE_REFUSED as a broker wrote it here (paths shortened); INDEX_PAGE_REFUSED is Kafka's line
# for a failed append (ReplicaManager) around the error a JVM raised here on a full tmpfs;
# JVM_KILLED is the head of HotSpot's fatal-error report.
WRITE_REFUSED = """\
[2026-11-30 22:03:16,618] ERROR Error while appending records to t-1 in dir /d/node-1/data \
(org.apache.kafka.storage.internals.log.LogDirFailureChannel)
java.io.IOException: No space left on device
\tat java.base/sun.nio.ch.FileDispatcherImpl.write0(Native Method)
[2026-11-30 22:03:16,638] ERROR Shutdown broker because all log dirs in /d/node-1/data have \
failed (kafka.log.LogManager)
"""
INDEX_PAGE_REFUSED = """\
[2026-11-30 22:10:02,101] ERROR [ReplicaManager broker=2] Error processing append operation on \
partition t-0 (kafka.server.ReplicaManager)
java.lang.InternalError: a fault occurred in a recent unsafe memory access operation in \
compiled Java code
"""
JVM_KILLED = """\
# A fatal error has been detected by the Java Runtime Environment:
#
#  SIGBUS (0x7) at pc=0x00007f3b1d2e4c5a, pid=4242, tid=4250
"""
HEALTHY = """\
[2026-11-30 22:03:13,547] INFO [ReplicaFetcher replicaId=1, leaderId=3, fetcherId=0] Truncating \
partition t-2 with TruncationState(offset=0, completed=true) (kafka.server.ReplicaFetcherThread)
[2026-11-30 22:03:20,001] ERROR [ReplicaManager broker=1] Error processing append operation on \
partition t-0 (kafka.server.ReplicaManager)
java.lang.NullPointerException: Cannot invoke "Object.hashCode()"
"""


@pytest.mark.parametrize("log", [WRITE_REFUSED, INDEX_PAGE_REFUSED, JVM_KILLED])
def test_each_way_a_full_disk_reaches_the_broker_counts(log: str) -> None:
    assert full_disk_signs(log) >= 1


def test_a_broker_log_without_a_full_disk_counts_nothing() -> None:
    assert full_disk_signs(HEALTHY) == 0


def test_last_errors_names_each_error_with_its_exception() -> None:
    shown = last_errors(HEALTHY + INDEX_PAGE_REFUSED)
    assert "java.lang.NullPointerException" in shown
    assert "java.lang.InternalError: a fault occurred" in shown
    assert "Truncating" not in shown
    assert last_errors(HEALTHY, count=1).count(" ERROR ") == 1
    assert last_errors("") == "(none)"
