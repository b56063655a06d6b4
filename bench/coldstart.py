"""Cold start: from exec of the function process to its first acknowledged 202.

    uv run python -m bench.coldstart [--runs 7] [--mode gateway|inline|both]

What a scale-from-zero request pays inside the container (Knative's own pod scheduling and
queue-proxy are not part of it): interpreter start, imports, functions-framework and gunicorn
start, then the first request builds the app (settings, producer, key store pool), resolves the
key (inline mode: in PostgreSQL; gateway mode, production's: the signed principal APISIX
forwards), produces to Kafka and waits for acks=all. Each run starts a fresh process
the way the image does (`audit-ingest-serve --asgi`), polls with the event until the 202
arrives, then stops it with SIGTERM.

Runs against `make run`'s stack when .dev/stack.env names services that answer, else starts
its own LocalStack in a temporary folder. Prints the median, min and max in milliseconds, and
the CPU time the process used by its first 202 (a figure a busy machine does not inflate).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
from devstack import LocalStack, StackPorts
from devstack.ports import free_ports
from devstack.provision import provision, stack_settings

from audit_ingest.adapters.key_admin import IssuedKey, create_key
from audit_ingest.domain.gateway_token import PRINCIPAL_HEADER, sign_principal
from audit_ingest.domain.principal import Principal
from bench import interpreter

REPO = Path(__file__).resolve().parent.parent
ENV_FILE = REPO / ".dev" / "stack.env"
SECRET = secrets.token_hex(32)  # shared by the bench and the function it starts
STACK_VARS = ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
EVENT = {
    "actor": {"id": "user-1", "type": "user"},
    "action": {"name": "user.created"},
    "resource": {"type": "user", "id": "user-2"},
    "result": {"success": True},
}


def _answers(url: str) -> bool:
    address = url.split("://", 1)[-1].split("/", 1)[0].split("@")[-1].split(",")[0]
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=0.5):
            return True
    except (OSError, ValueError):
        return False


@contextmanager
def stack_env() -> Iterator[tuple[str, dict[str, str]]]:
    """`make run`'s stack when it answers, else a LocalStack of our own (stopped after)."""
    if ENV_FILE.exists():
        pairs = (line.split("=", 1) for line in ENV_FILE.read_text().splitlines() if "=" in line)
        env = {name: value for name, value in pairs if name in STACK_VARS}
        if len(env) == len(STACK_VARS) and all(_answers(v) for v in env.values()):
            yield "make run's stack (.dev/stack.env)", env
            return
    root = Path(tempfile.mkdtemp(prefix="audit-ingest-coldstart-"))
    root.chmod(0o755)
    local = LocalStack(root=root, ports=StackPorts.free(), kafka_libs=REPO / ".dev" / "kafka-libs")
    try:
        local.start()
        yield "a LocalStack of its own", dict(local.env)
    finally:
        local.stop()
        shutil.rmtree(root, ignore_errors=True)


def cpu_seconds(root: int) -> float:
    """User + system CPU of a process and its live descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(proc.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    family, total = {root}, 0.0
    for _ in range(4):  # gunicorn: arbiter -> worker (plus helper threads, not processes)
        family |= {pid for pid, (ppid, _cpu) in stats.items() if ppid in family}
    for pid in family:
        total += stats.get(pid, (0, 0.0))[1]
    return total


def one_run(function: str, env: dict[str, str], auth: dict[str, str]) -> tuple[float, float]:
    """Seconds from exec to the first 202, and the CPU seconds the process used by then."""
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}/v1/events"
    body = orjson.dumps(EVENT)
    headers = {"content-type": "application/json", **auth}
    executable = interpreter.service_bin() / "audit-ingest-serve"
    argv = [str(executable), "--target", function, "--source", f"functions/{function}/main.py"]
    argv += ["--asgi", "--host", "127.0.0.1", "--port", str(port)]
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=REPO, env=env, stderr=subprocess.PIPE)
    try:
        with httpx.Client(timeout=30) as client:
            while True:
                if process.poll() is not None:
                    error = process.stderr.read().decode() if process.stderr else ""
                    raise SystemExit(f"{function} exited with {process.returncode}:\n{error}")
                try:
                    response = client.post(url, content=body, headers=headers)
                except httpx.ConnectError:  # not listening yet
                    time.sleep(0.002)
                    continue
                if response.status_code != 202:
                    raise SystemExit(f"first answer {response.status_code}: {response.text}")
                return time.perf_counter() - started, cpu_seconds(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def gateway_principal(issued: IssuedKey, secret: bytes) -> str:
    """What `authorize` would sign for this key (APISIX forwards it to the function)."""
    stored = issued.stored
    principal = Principal(stored.tenant_id, stored.id, stored.scopes, stored.rate_limit)
    return sign_principal(principal, secret=secret, now=int(time.time()), ttl=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--mode", choices=["gateway", "inline", "both"], default="both")
    args = parser.parse_args()
    function = "ingest_event"
    modes = ["gateway", "inline"] if args.mode == "both" else [args.mode]
    results: dict[str, list[tuple[float, float]]] = {}
    with stack_env() as (where, env):
        settings = stack_settings(env)
        provision(settings)
        issued = create_key(
            settings.database_url.get_secret_value(),
            tenant_id=uuid.uuid4(),
            name="bench-coldstart",
            scopes=("events:write",),
            rate_limit=1_000_000,
            expires_at=None,
        )
        base_env = {**os.environ, **env, "K_SERVICE": "coldstart", "LOG_LEVEL": "WARNING"}
        base_env.pop("PYTHONPATH", None)
        for mode in modes:
            if mode == "gateway":
                process_env = {**base_env, "AUTH_MODE": "gateway", "GATEWAY_SIGNING_SECRET": SECRET}
                auth = {PRINCIPAL_HEADER: gateway_principal(issued, SECRET.encode())}
            else:
                process_env = {**base_env, "AUTH_MODE": "inline"}
                auth = {"x-api-key": issued.secret}
            one_run(function, process_env, auth)  # warms the OS page cache, not measured
            results[mode] = [one_run(function, process_env, auth) for _ in range(args.runs)]
    load = os.getloadavg()[0]
    print(f"cold start of {function}, exec -> first 202 (acks=all), against {where}")
    print(f"  machine: {os.cpu_count()} cpu(s), load average {load:.1f} at the end")
    for mode, samples in results.items():
        ms = sorted(wall * 1000 for wall, _cpu in samples)
        cpu = statistics.median(cpu * 1000 for _wall, cpu in samples)
        print(
            f"  {mode:<8} runs={len(ms)}  median={statistics.median(ms):.0f} ms  "
            f"min={ms[0]:.0f} ms  max={ms[-1]:.0f} ms  (CPU used: median {cpu:.0f} ms)"
        )


if __name__ == "__main__":
    main()
