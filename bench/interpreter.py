"""The Python the bench runs the services on: one built the way the image's is.

The image runs the functions on the official `python:3.11-slim-bookworm`, whose CPython is
configured `--enable-optimizations --with-lto` (profile-guided and link-time optimised; the
docker-library/python Dockerfiles). The project's own environment (`make install`: uv on the
first `python3.11` it finds) may sit on an interpreter built without either, as pyenv builds by
default: on the 2026-12-01 machine a single-event request cost 11-14 % more CPU on it in
process (5-7 % at the DoD), since the interpreter is most of a request's CPU
(docs/benchmarks.md, round nine).
Measuring the functions on that build would report a cost the deployment never pays.

So the services under test (the functions, the no-op floor, the Kafka floor) run from a
second environment, `.dev/bench-venv`, synced from the same lock (runtime dependencies only,
as the image installs them) onto the interpreter `BENCH_PYTHON` names:

- unset or `auto`: Debian's own `/usr/bin/python3.X` for the project's `3.X` when it is there
  (Debian builds it with profile-guided and link-time optimisation too), else the project's
  interpreter;
- `project`: the project's interpreter (the figures of every run before round nine);
- a path: that interpreter.

Every result file names the interpreter it measured (`describe`), so a figure is never read
against one taken on another build. The harness itself (generator control, reading the topic)
stays on the project's interpreter: its speed is not measured.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_VENV = REPO / ".dev" / "bench-venv"
# Where Debian installs its build of a CPython minor version.
SYSTEM_PYTHON = "/usr/bin/python{major}.{minor}"


@dataclass(frozen=True)
class Choice:
    """The interpreter to run the services on: `python` (None = the project's own), and why."""

    python: Path | None
    reason: str


def choose(setting: str | None, system_candidate: Path, system_exists: bool) -> Choice:
    """What `BENCH_PYTHON` (`setting`) selects; `system_candidate` is Debian's interpreter for
    the project's minor version and `system_exists` whether it is installed."""
    value = (setting or "auto").strip()
    if value == "project":
        return Choice(None, "BENCH_PYTHON=project")
    if value == "auto":
        if system_exists:
            return Choice(system_candidate, f"auto: {system_candidate} (Debian's, PGO + LTO)")
        return Choice(None, f"auto: no {system_candidate}; the project's interpreter")
    return Choice(Path(value), f"BENCH_PYTHON={value}")


def current_choice() -> Choice:
    candidate = Path(
        SYSTEM_PYTHON.format(major=sys.version_info.major, minor=sys.version_info.minor)
    )
    return choose(os.environ.get("BENCH_PYTHON"), candidate, candidate.exists())


@cache
def service_bin() -> Path:
    """The `bin` directory to run the services from (`audit-ingest-serve`, `python`).

    Syncs `.dev/bench-venv` from `uv.lock` onto the chosen interpreter first (uv does nothing
    when it is current); the project's own `bin` when the choice is the project's interpreter.
    """
    choice = current_choice()
    if choice.python is None:
        return Path(sys.executable).parent
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is not on PATH: run the bench as `uv run python -m bench...`")
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(BENCH_VENV)}
    env.pop("VIRTUAL_ENV", None)  # uv would warn that it does not match the target
    result = subprocess.run(
        [uv, "sync", "--frozen", "--no-dev", "--quiet", "--python", str(choice.python)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(
            f"could not build {BENCH_VENV} on {choice.python} ({choice.reason}):\n"
            f"{result.stderr.strip()}\nSet BENCH_PYTHON=project to measure on the project's "
            "interpreter instead."
        )
    return BENCH_VENV / "bin"


def service_python() -> Path:
    return service_bin() / "python"


def describe(python: Path) -> dict[str, str]:
    """Which interpreter `python` is: version, real executable, and how it was configured."""
    script = (
        "import platform, sys, sysconfig;"
        "print(platform.python_version());"
        "print(sys._base_executable);"
        "print(sysconfig.get_config_var('CONFIG_ARGS') or '')"
    )
    try:
        out = subprocess.run(
            [str(python), "-c", script], capture_output=True, text=True, timeout=20, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {"python": "unavailable", "executable": str(python)}
    version, executable, config = [*out, "", "", ""][:3]
    return {
        "python": version,
        "executable": executable,
        "configure": config,
        "choice": current_choice().reason,
    }
