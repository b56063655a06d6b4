"""Function processes for the bench, started as production starts them, and their CPU time.

A function runs as the image runs it, under `audit-ingest-serve` (functions-framework's ASGI
server: gunicorn arbiter + uvicorn worker(s)), on an interpreter built as the image's is
(`bench.interpreter`), pinned with `taskset` to the service core. CPU time is read from
/proc/<pid>/stat (utime + stime of every thread) for the arbiter and each worker, so CPU per
event can be computed from the deltas around a run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench import interpreter

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process (all its threads), in seconds; zeros when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0, 0.0
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 when it is gone."""
    return sum(cpu_times(pid))


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def cpu_of(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


@dataclass
class FunctionProcess:
    target: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    started_at: float
    ready_after: float = 0.0
    workers: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pids(self) -> list[int]:
        return [self.process.pid, *self.workers]

    def cpu(self) -> float:
        return cpu_of(self.pids)

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def source_of(target: str, code_root: Path) -> Path:
    for base in (code_root / "functions", REPO / "bench" / "functions"):
        if (base / target / "main.py").exists():
            return base / target / "main.py"
    raise FileNotFoundError(f"no function {target!r}")


def launch(
    target: str,
    port: int,
    env: dict[str, str],
    log_dir: Path,
    *,
    cpu: str | None = "0",
    code_root: Path = REPO,
) -> FunctionProcess:
    """Exec `target` as the image does (`audit-ingest-serve`), not waiting for it.

    A "before" copy of the library older than `audit_ingest.serve` runs under the
    functions-framework CLI it was measured with.
    """
    launcher = "audit-ingest-serve"
    if not (code_root / "shared" / "audit_ingest" / "serve.py").exists():
        launcher = "functions-framework"
    executable = shutil.which(launcher, path=str(interpreter.service_bin()))
    if executable is None:
        raise SystemExit(f"{launcher} is not installed (run `make install`)")
    argv = [
        executable,
        "--target",
        target,
        "--source",
        str(source_of(target, code_root)),
        "--asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if cpu is not None:
        argv = ["taskset", "-c", cpu, *argv]
    if code_root != REPO:
        # An older copy of the library (a "before" measurement) shadows the installed one.
        env = {**env, "PYTHONPATH": str(code_root / "shared")}
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{target}-{port}.log"
    started = time.monotonic()
    process = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    return FunctionProcess(target, port, process, log, started)


def wait_healthy(function: FunctionProcess, workers: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if function.process.poll() is not None:
            raise RuntimeError(f"{function.target} exited early:\n{function.log.read_text()}")
        try:
            with urllib.request.urlopen(f"{function.url}/health", timeout=1) as response:  # noqa: S310
                if response.status in (200, 202):
                    break
        except OSError:
            time.sleep(0.05)
    else:
        function.stop()
        raise RuntimeError(f"{function.target} did not become healthy:\n{function.log.read_text()}")
    function.ready_after = time.monotonic() - function.started_at
    # gunicorn forks its workers; with taskset the launcher exec()s, so the pid is the arbiter.
    while len(children(function.process.pid)) < workers and time.monotonic() < deadline:
        time.sleep(0.05)
    function.workers = children(function.process.pid)


def start(
    target: str,
    port: int,
    env: dict[str, str],
    log_dir: Path,
    *,
    workers: int = 1,
    cpu: str | None = "0",
    code_root: Path = REPO,
) -> FunctionProcess:
    function = launch(
        target, port, {**env, "WORKERS": str(workers)}, log_dir, cpu=cpu, code_root=code_root
    )
    wait_healthy(function, workers)
    return function
