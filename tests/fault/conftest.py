"""Fixtures of the fault tier: a private 3-broker cluster, PostgreSQL and Redis; results.

The stack is private to this tier (its own folder and free ports; the shell's
DATABASE_URL / REDIS_URL / KAFKA_BOOTSTRAP_SERVERS are ignored), so faults never touch the
integration and e2e stack or a `make run`. As root (with `ip netns`), each broker and each
function runs in a network namespace of its own and the brokers' log directories and
PostgreSQL's data sit on small tmpfs filesystems (devstack/netns.py, devstack/cluster.py);
otherwise everything runs on loopback and the network and disk faults are skipped, with the
reason (`FAULT_NETNS=0` forces loopback). Before each test the stack is brought back to full
health: no partition, slow link or full disk left, every node up and unpaused, every
partition fully in sync, PostgreSQL and Redis up. Namespaces and mounts are removed at the
end even after a failure, and those of a killed earlier run when the next one starts.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devstack.cluster import ClusterStack
from devstack.netns import Topology

from audit_ingest.adapters.migrations import migrate
from tests.fault import profiles
from tests.fault.harness import (
    RESULTS,
    Run,
    RunFault,
    RunResult,
    Scenario,
    execute,
    isolation_unavailable,
    prepare,
    save_summary,
)
from tests.fault.verifier import check_gate, keeps_claims
from tests.stack import KAFKA_LIBS, REPO

COLUMNS = (
    "fault",
    "sent",
    "events",
    "acked",
    "rejected",
    "ambiguous",
    "lost",
    "phantoms",
    "written_rejections",
    "duplicates",
    "max_unavailability_s",
    "p50_ms",
    "p99_ms",
    "seconds",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault: fault-injection runs against a 3-broker cluster")


@pytest.fixture(scope="session")
def profile() -> profiles.Profile:
    return profiles.current()


@pytest.fixture(scope="session")
def results_dir(profile: profiles.Profile) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = REPO / ".dev" / "fault-results" / f"{profile.name}-{stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterStack]:
    # Not pytest's tmp_path: PostgreSQL runs as an unprivileged user when the tests run as
    # root, so it must be able to enter the folder.
    root = Path(tempfile.mkdtemp(prefix="audit-ingest-fault-"))
    root.chmod(0o755)
    stack = ClusterStack(root, kafka_libs=KAFKA_LIBS, isolated=isolation_unavailable() is None)
    try:
        stack.start()
        migrate(stack.postgres.url)
        yield stack
    finally:
        try:
            stack.stop(graceful=False)  # the folder is deleted next: no need to flush
        finally:
            try:
                stack.release()  # namespaces and mounts, even after a failure
            finally:
                shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def healthy(cluster: ClusterStack) -> ClusterStack:
    """The stack as a test expects to find it: everything up, every replica in sync.

    Also undoes any network or disk fault a failed test left behind.
    """
    cluster.heal()
    for node in cluster.kafka.nodes:
        node.signal(signal.SIGCONT)
    down = [node.node_id for node in cluster.kafka.nodes if not node.is_running()]
    if down:
        cluster.kafka.start_nodes(down)
    cluster.redis.signal(signal.SIGCONT)
    for service in (cluster.postgres, cluster.redis):
        if not service.is_running():
            service.start()
    cluster.kafka.wait_healthy(timeout=120)
    return cluster


@pytest.fixture
def run_fault(
    healthy: ClusterStack,
    profile: profiles.Profile,
    results_dir: Path,
    request: pytest.FixtureRequest,
) -> Iterator[RunFault]:
    """`run_fault(fault, scenario, env=..., attempt_timeout=...)`: prepare, drive, verify, gate.

    Returns the run's result (the gate has passed).
    """
    prepared: list[Run] = []

    def go(
        fault: str,
        scenario: Scenario,
        env: dict[str, str] | None = None,
        attempt_timeout: float | None = None,
    ) -> RunResult:
        name = request.node.name.replace("[", "-").replace("]", "")
        run = prepare(
            name,
            profile,
            healthy,
            results_dir / name,
            env_overrides=env,
            attempt_timeout=attempt_timeout,
        )
        prepared.append(run)
        result = execute(run, scenario, fault)
        RESULTS.append(result)
        check_gate(result.verdict, claims_kept=keeps_claims(fault, run.functions.output()))
        return result

    yield go
    for run in prepared:
        run.functions.stop()
    for result in RESULTS:
        if any(result.run is run for run in prepared):
            save_summary(result)  # again: the test body may have added notes


@pytest.fixture
def network(request: pytest.FixtureRequest) -> Topology:
    """The stack's network topology; the test is skipped (with the reason) without one.

    Checked before the stack starts: list this fixture before `run_fault`.
    """
    reason = isolation_unavailable()
    if reason is not None:
        pytest.skip(f"no network namespaces: {reason}")
    stack: ClusterStack = request.getfixturevalue("healthy")
    assert stack.network is not None
    return stack.network


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| " + " | ".join(("run", *COLUMNS)) + " |",
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in ("run", *COLUMNS)) + " |")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    table = _table([result.row() for result in RESULTS])
    terminalreporter.write_sep("-", "fault runs")
    terminalreporter.write_line(table)
    folder = RESULTS[0].run.out_dir.parent
    (folder / "summary.md").write_text(table + "\n")
    terminalreporter.write_line(f"ledgers, records and summaries: {folder}")
