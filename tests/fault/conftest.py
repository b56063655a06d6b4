"""Fixtures of the fault tier: a private 3-broker cluster, PostgreSQL and Redis; results.

The stack is private to this tier (its own folder and free loopback ports; the shell's
DATABASE_URL / REDIS_URL / KAFKA_BOOTSTRAP_SERVERS are ignored), so faults never touch the
integration and e2e stack or a `make run`. Before each test the stack is brought back to full
health: every node up and unpaused, every partition fully in sync, PostgreSQL and Redis up.
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

from audit_ingest.adapters.migrations import migrate
from tests.fault import profiles
from tests.fault.harness import RESULTS
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
    stack = ClusterStack(root, kafka_libs=KAFKA_LIBS)
    try:
        stack.start()
        migrate(stack.postgres.url)
        yield stack
    finally:
        try:
            stack.stop(graceful=False)  # the folder is deleted next: no need to flush
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def healthy(cluster: ClusterStack) -> ClusterStack:
    """The stack as a test expects to find it: everything up, every replica in sync."""
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
