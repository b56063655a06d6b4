"""The functions as real processes, started as the image starts them (`audit-ingest-serve`).

Helpers for the tiers that run them (e2e, hostile, sdk, fault, integration): a tier's
conftest turns them into its own fixtures (`function_environment`, `temporary_log_dir`,
`running_functions`), and a test that starts a function of its own calls `start_function` and
`stop_function` directly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from devstack.ports import free_ports

from tests.stack import REPO

# Short cache lifetimes so revocation is observable within a test.
E2E_SETTINGS = {
    "KEY_CACHE_TTL_SECONDS": "1",
    "KEY_NEGATIVE_CACHE_TTL_SECONDS": "0",
    "LOG_LEVEL": "WARNING",
}


@dataclass
class FunctionProcess:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_function(
    target: str,
    env: dict[str, str],
    log_dir: Path,
    *,
    host: str = "127.0.0.1",
    exec_prefix: Sequence[str] = (),
) -> FunctionProcess:
    """Start `target` listening on `host` (`exec_prefix`: e.g. `ip netns exec <ns>`)."""
    (port,) = free_ports(1)
    # One file per process: a test that starts its own function beside the session's must not
    # share (and truncate, and interleave with) the session function's log.
    log = log_dir / f"{target}-{port}.log"
    executable = shutil.which("audit-ingest-serve", path=str(Path(sys.executable).parent))
    assert executable, "audit-ingest-serve is not installed in this environment (uv sync)"
    process = subprocess.Popen(
        [
            *exec_prefix,
            executable,
            "--target",
            target,
            "--source",
            f"functions/{target}/main.py",
            "--asgi",
            "--host",
            host,
            "--port",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{target} exited early:\n{log.read_text()}")
        try:
            # /ready, as Knative's readiness probe: it builds the app (clients, producer), so
            # the tests' first request is not also the function's cold start.
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return FunctionProcess(target, url, process, log)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{target} did not become healthy:\n{log.read_text()}")


def stop_function(function: FunctionProcess, timeout: float = 30) -> int:
    if function.process.poll() is None:
        function.process.terminate()
        try:
            function.process.wait(timeout)
        except subprocess.TimeoutExpired:
            function.process.kill()
            function.process.wait()
    return function.process.returncode


def kill_function(function: FunctionProcess, timeout: float = 10) -> None:
    """SIGKILL the whole function (worker and master at once), as a crashed pod; returns once
    every process is gone (the worker is not our child: it is polled), so nothing it held
    (its listening socket, its connections) is open any more."""
    master = function.process
    pids = [*_children(master.pid), master.pid]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    master.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.005)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def function_environment(stack_env: dict[str, str]) -> dict[str, str]:
    """The environment of a function process against the stack (`E2E_SETTINGS` applied)."""
    env = {**os.environ, **stack_env, **E2E_SETTINGS}
    env.pop("PYTHONPATH", None)
    return env


@contextmanager
def temporary_log_dir() -> Iterator[Path]:
    """A fresh folder for the processes' logs, deleted afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="audit-ingest-e2e-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def running_functions(env: dict[str, str], log_dir: Path) -> Iterator[dict[str, FunctionProcess]]:
    """The two ingest functions, "single" and "batch", stopped afterwards."""
    started = {
        "single": start_function("ingest_event", {**env, "K_SERVICE": "ingest-event"}, log_dir)
    }
    try:
        started["batch"] = start_function(
            "ingest_batch", {**env, "K_SERVICE": "ingest-batch"}, log_dir
        )
        yield started
    finally:
        for function in started.values():
            stop_function(function)


# -- session fixtures (a pytest plugin: tests/conftest.py loads this module) --------------------


@pytest.fixture(scope="session")
def function_env(stack_env: dict[str, str]) -> dict[str, str]:
    """The functions' environment: the stack's addresses plus the test settings."""
    return function_environment(stack_env)


@pytest.fixture(scope="session")
def log_dir() -> Iterator[Path]:
    with temporary_log_dir() as folder:
        yield folder


@pytest.fixture(scope="session")
def functions(function_env: dict[str, str], log_dir: Path) -> Iterator[dict[str, FunctionProcess]]:
    """`ingest_event` and `ingest_batch` as real processes, once per session (e2e, SDK)."""
    with running_functions(function_env, log_dir) as started:
        yield started
