"""A/B of the server's HTTP protocol alone: uvicorn's httptools protocol against ours.

`audit_ingest.http.one_write` writes each response's head and body in one socket write where
uvicorn writes them in two. Around a real request (`bench.ab`) that saving is a few
microseconds inside 200-600 µs that move ±15 % from minute to minute, so it is measured here
on its own: uvicorn (uvloop, no access log) serving an ASGI app that only answers 202 with a
small JSON body, the server on CPU 0 on the bench's interpreter, the Go generator on CPU 1,
the two protocols alternated (the order swapped every round), CPU per request from
/proc/<pid>/stat split into user and system time.

    uv run python -m bench.protocol [--rate 5000] [--rounds 6] [--duration 8]

Without `--rate` the load is closed loop (64 connections); with it, open loop at that rate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from bench import generator, interpreter
from bench.procs import cpu_times
from bench.run import WORK
from bench.stack import REPO, _answers

PROTOCOLS = {
    "uvicorn": "httptools",
    "one-write": "audit_ingest.http.one_write:OneWriteHttpTools",
}
PORT = 18123
BODY = b'{"id":"0196f0c2-7e1c-7a3e-9c4e-1d2f3a4b5c6d","status":"accepted"}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the request, answers 202 with `BODY`: the protocol's work and little else."""
    if scope["type"] != "http":
        return
    await receive()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def serve(port: int, http: str) -> None:
    import uvicorn

    uvicorn.run(
        app, host="127.0.0.1", port=port, http=http, loop="uvloop", access_log=False,
        log_level="warning",
    )  # fmt: skip


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not _answers(f"http://127.0.0.1:{port}"):
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {process.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit("the server did not listen within 30 s")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, help="open loop at this many requests a second")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--conns", type=int, default=64)
    args = parser.parse_args()
    build = generator.ensure_built()
    body = WORK / "protocol-body.json"
    body.parent.mkdir(parents=True, exist_ok=True)
    body.write_text('{"a":1}')
    python = str(interpreter.service_python())
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'shared'}{os.pathsep}{REPO}"}
    seen: dict[str, list[float]] = {name: [] for name in PROTOCOLS}
    for round_ in range(args.rounds):
        order = list(PROTOCOLS.items())
        for name, http in order if round_ % 2 == 0 else order[::-1]:
            argv = ["taskset", "-c", "0", python, "-m", "bench.protocol", "--serve", http]
            process = subprocess.Popen(argv, cwd=REPO, env=env)
            try:
                _wait_listening(PORT, process)
                user0, system0 = cpu_times(process.pid)
                result = generator.run(
                    build.path,
                    url=f"http://127.0.0.1:{PORT}/",
                    body=body,
                    headers={"Content-Type": "application/json"},
                    mode="open" if args.rate else "closed",
                    conns=args.conns,
                    duration=args.duration,
                    warmup=1.0,
                    rate=args.rate,
                )
                user1, system1 = cpu_times(process.pid)
            finally:
                process.terminate()
                process.wait()
            per = 1e6 / max(result["ok_all"], 1)
            user, system = (user1 - user0) * per, (system1 - system0) * per
            seen[name].append(user + system)
            print(
                f"{name:>9}: user {user:5.1f} + system {system:5.1f} = {user + system:6.1f} µs "
                f"a request, {result['rate_achieved']:8.0f} req/s, errors {result['errors']}",
                flush=True,
            )
            time.sleep(0.5)
    for name, values in seen.items():
        rounded = ", ".join(f"{value:.1f}" for value in values)
        print(f"{name:>9}: median {statistics.median(values):.1f} µs a request [{rounded}]")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(PORT, sys.argv[2])
    else:
        main()
