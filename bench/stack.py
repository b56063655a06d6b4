"""The stack a bench runs against: `make run`'s, when it is up, else the bench's own.

- `running`: the stack `make run` started (addresses in .dev/stack.env); used only when every
  service answers. Its servers are not touched (not pinned, not stopped).
- `own`: a LocalStack in .dev/bench on fixed ports (55532, 56479, 59192, 59193), started here
  and stopped at the end; the Kafka jars come from `make run`'s cache (.dev/kafka-libs).
- `auto` (default): `running` when it answers, else `own`.

Either way the topics are created (idempotent) and a bench API key is issued with a quota that
does not bind.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from devstack import LocalStack, StackPorts
from devstack.ports import port_is_free
from devstack.provision import provision, stack_settings

from audit_ingest.adapters.key_admin import create_key, revoke_key
from audit_ingest.settings import Settings

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
DEV = REPO / ".dev"
BENCH_ROOT = DEV / "bench"
BENCH_PORTS = StackPorts(postgres=55532, redis=56479, kafka=59192, kafka_controller=59193)
BENCH_TENANT = uuid.UUID("bebebebe-0000-4000-8000-000000000001")
STACK_VARS = ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")


@dataclass
class BenchStack:
    kind: str  # "running" (make run's) or "own" (.dev/bench)
    env: dict[str, str]
    settings: Settings
    api_key: str = ""
    api_key_id: str = ""
    local: LocalStack | None = None
    pids: dict[str, int] = field(default_factory=dict)

    def function_env(self) -> dict[str, str]:
        """The environment a function under test starts with: the stack's, named `bench`."""
        return {**self.env, "K_SERVICE": "bench", "K_REVISION": "bench", "PATH": "/usr/bin:/bin"}

    def close(self) -> None:
        if self.api_key_id:
            try:
                revoke_key(
                    self.settings.database_url.get_secret_value(), uuid.UUID(self.api_key_id)
                )
            except Exception as exc:  # the report matters more than the cleanup
                log.warning("could not revoke the bench key: %s", exc)
        if self.local is not None:
            self.local.stop()


def _read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            env[name.strip()] = value.strip().strip("'\"")
    return env


def _answers(url: str) -> bool:
    """True when host:port of a service URL accepts TCP connections."""
    rest = url.split("://", 1)[-1].split("/", 1)[0].split("@")[-1]
    host, _, port = rest.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=0.5):
            return True
    except (OSError, ValueError):
        return False


def running_stack_env() -> dict[str, str] | None:
    """`make run`'s addresses, when .dev/stack.env exists and every service answers."""
    path = DEV / "stack.env"
    if not path.exists():
        return None
    env = _read_env_file(path)
    if not all(name in env and _answers(env[name]) for name in STACK_VARS):
        return None
    return {name: env[name] for name in STACK_VARS}


def _pid_of_port(port: int) -> int | None:
    """The pid listening on 127.0.0.1:port (from /proc; Linux only)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


def _wait_for_ports(ports: StackPorts, timeout: float = 75.0) -> bool:
    """True once every fixed port can be bound, or is already held by this root's own servers.

    A TIME_WAIT socket that used one of them as its client port is gone within 60 s.
    """
    pid_files = [BENCH_ROOT / f"{name}.pid" for name in ("postgres", "redis", "kafka")]
    if any(path.exists() for path in pid_files):
        return True  # a leftover of ours: LocalStack adopts or replaces it
    deadline = time.monotonic() + timeout
    wanted = (ports.postgres, ports.redis, ports.kafka, ports.kafka_controller)
    while not all(port_is_free(port) for port in wanted):
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)
    return True


def service_pids(env: dict[str, str]) -> dict[str, int]:
    """Pids of the broker, Redis and PostgreSQL (for CPU accounting), where found."""
    pids: dict[str, int] = {}
    for name, var in (
        ("kafka", "KAFKA_BOOTSTRAP_SERVERS"),
        ("redis", "REDIS_URL"),
        ("postgres", "DATABASE_URL"),
    ):
        url = env.get(var, "")
        port = url.split(",")[0].rsplit(":", 1)[-1].split("/")[0]
        if port.isdigit() and (pid := _pid_of_port(int(port))) is not None:
            pids[name] = pid
    return pids


def pin(pids: dict[str, int], cpu: str) -> list[str]:
    """Move every thread of these servers (and their future children) to `cpu`."""
    pinned = []
    for name, pid in pids.items():
        done = subprocess.run(
            ["taskset", "-a", "-cp", cpu, str(pid)], capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            pinned.append(name)
        else:
            log.warning("could not pin %s (pid %d): %s", name, pid, done.stderr.strip())
    return pinned


def acquire(kind: str = "auto") -> BenchStack:
    """The stack to measure against, provisioned, with a bench key."""
    env = running_stack_env() if kind in ("auto", "running") else None
    local: LocalStack | None = None
    if env is not None:
        chosen = "running"
    elif kind == "running":
        raise SystemExit("--stack running: no answering `make run` stack (.dev/stack.env)")
    else:
        chosen = "own"
        root, ports = BENCH_ROOT, BENCH_PORTS
        if not _wait_for_ports(ports):
            # The fixed ports sit in the kernel's ephemeral range: another program's connection
            # can hold one for a while. A fresh stack on free ports then (slower first start).
            root, ports = BENCH_ROOT / "free-ports", StackPorts.free()
            shutil.rmtree(root, ignore_errors=True)
            log.warning("bench ports busy; a fresh stack in %s on %s", root, ports)
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
        local = LocalStack(root=root, ports=ports, kafka_libs=DEV / "kafka-libs")
        local.start()
        env = dict(local.env)
    settings = stack_settings(env)
    provision(settings)
    issued = create_key(
        settings.database_url.get_secret_value(),
        tenant_id=BENCH_TENANT,
        name="make bench",
        scopes=("events:write",),
        rate_limit=1_000_000_000,  # a quota that never binds: the limiter still runs
        expires_at=None,
    )
    stack = BenchStack(chosen, env, settings, issued.secret, issued.stored.id, local)
    stack.pids = service_pids(env)
    return stack
