"""The Go load generator (bench/loadgen): built once per source version, run pinned.

Python cannot generate thousands of requests per second on one core and measure them
honestly, so the load comes from a small Go program (net/http keep-alive clients, HDR
histograms). It is tested (`go test`) and built into .dev/bin/loadgen-<hash of its sources
and go.sum> on first use (dependencies from the Go module proxy; Go 1.19 or later, apt's
`golang-go` when there is none) and reused after that.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "bench" / "loadgen"
BIN = REPO / ".dev" / "bin"


def source_key() -> str:
    digest = hashlib.sha256()
    for path in sorted(SOURCE.iterdir()):
        if path.suffix == ".go" or path.name in ("go.mod", "go.sum"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Build:
    path: Path
    seconds: float | None  # None: reused from the cache
    go_version: str


def go_version() -> str:
    go = shutil.which("go")
    if go is None:
        return "unavailable"
    text = subprocess.run([go, "version"], capture_output=True, text=True).stdout.strip()
    return text.removeprefix("go version ")  # "go1.26.8 linux/amd64"


def _install_go() -> str:
    """Debian's Go (1.19 on bookworm: bench/loadgen's go.mod asks for no more) when absent."""
    from devstack.sysdeps import apt_install

    apt_install(["golang-go"], needed_for="Go (to build the bench's load generator)")
    go = shutil.which("go")
    if go is None:
        raise SystemExit("make bench needs the Go toolchain (`go`) to build bench/loadgen")
    return go


def ensure_built() -> Build:
    """The generator binary for the current sources; built (and timed) when missing."""
    target = BIN / f"loadgen-{source_key()}"
    version = go_version()
    if target.exists():
        return Build(target, None, version)
    go = shutil.which("go") or _install_go()
    BIN.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
    started = time.monotonic()
    # Its own tests first (how it fills __SEQ__ and compresses): a generator that sent the
    # wrong requests would measure the wrong thing without failing.
    for argv in ([go, "test", "./..."], [go, "build", "-trimpath", "-o", str(partial), "."]):
        done = subprocess.run(argv, cwd=SOURCE, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(
                f"bench/loadgen: `{' '.join(argv[:2])}` failed:\n{done.stdout}{done.stderr}"
            )
    seconds = time.monotonic() - started
    os.replace(partial, target)
    for stale in BIN.glob("loadgen-*"):
        if stale != target and not stale.name.endswith(".tmp"):
            stale.unlink(missing_ok=True)
    return Build(target, seconds, version)


def offer_single_events(
    binary: Path,
    *,
    function_url: str,
    body: Path,
    api_key: str,
    rate: float,
    conns: int,
    duration: float,
    warmup: float,
    label: str,
) -> dict[str, Any]:
    """Single events offered open loop to a function's `/v1/events` (every answer checked
    for its `event_id`), the generator on CPU 1."""
    return run(
        binary,
        url=function_url + "/v1/events",
        body=body,
        headers={"Content-Type": "application/json", "X-API-Key": api_key},
        mode="open",
        rate=rate,
        conns=conns,
        duration=duration,
        warmup=warmup,
        expect='"event_id"',
        cpu="1",
        label=label,
    )


def run(
    binary: Path,
    *,
    url: str,
    body: Path | None,
    headers: dict[str, str],
    mode: str,
    conns: int,
    duration: float,
    warmup: float,
    rate: float | None = None,
    expect: str | None = None,
    cpu: str | None = "1",
    label: str = "",
    method: str = "POST",
    status: int = 202,
    gzip: bool = False,
) -> dict[str, Any]:
    """One generator run; its JSON result (see bench/loadgen/main.go).

    `__SEQ__` in the body or a header value is filled per request; `gzip` compresses each
    filled body (the Content-Encoding header is the caller's).
    """
    argv = [
        str(binary),
        "-url",
        url,
        "-method",
        method,
        "-status",
        str(status),
        "-mode",
        mode,
        "-conns",
        str(conns),
        "-duration",
        f"{duration}s",
        "-warmup",
        f"{warmup}s",
        "-label",
        label,
    ]
    if body is not None:
        argv += ["-body", str(body)]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    if rate is not None:
        argv += ["-rate", str(rate)]
    if expect:
        argv += ["-expect", expect]
    if gzip:
        argv.append("-gzip")
    if cpu is not None:
        argv = ["taskset", "-c", cpu, *argv]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + warmup + 120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    # The generator's own CPU: near one core means it, not the server, set the pace.
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["generator_cpu_s"] = round(used, 3)
    result["generator_util"] = round(used / max(result["wall_s"], 1e-9), 3)
    return result
