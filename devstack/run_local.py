"""`make run`: the stack, the schema, the topics, a demo key, and both functions on one port.

Progress goes to stderr as it happens (a first run installs and fetches what is missing);
Ctrl-C stops everything this started, says what it stopped, and the data stays in .dev/ for
the next run, the demo key included (kept in .dev/demo-key, mode 0600).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

from devstack.errors import DevstackError
from devstack.provision import DemoKey, demo_key, provision, stack_settings
from devstack.stack import LocalStack

ROOT = Path(".dev")
KEY_FILE = ROOT / "demo-key"
NAMES = {"postgres": "PostgreSQL", "redis": "Redis", "kafka": "Kafka"}
CURL = """curl -i http://127.0.0.1:{port}/v1/events \\
  -H 'Content-Type: application/json' \\
  -H 'X-API-Key: {key}' \\
  -d '{{"actor": {{"id": "user-123", "type": "user", "email": "user@example.com"}},
       "action": {{"name": "user.created"}},
       "resource": {{"type": "user", "id": "user-456"}},
       "result": {{"success": true}}}}'"""

# `--no-dev`: what `make run` installed is enough; a plain `uv run` would first install the
# dev group (uv's default: pytest, mypy, schemathesis, ...), about 60 packages.
CLI = "uv run --no-dev audit-ingest"

log = logging.getLogger("devstack.run_local")


def show_progress() -> None:
    """devstack's INFO lines (installs, fetches, starts, stops) on stderr, plainly."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("make run: %(message)s"))
    devstack = logging.getLogger("devstack")
    devstack.addHandler(handler)
    devstack.setLevel(logging.INFO)
    devstack.propagate = False


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the API server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the API server did not answer {url} within {timeout:.0f} s")


def describe_key(key: DemoKey) -> str:
    """The line above the demo key: whether it is the last run's, and if not, why."""
    if key.new_because is None:
        return "demo API key (the same as on the last run):"
    return f"demo API key (NEW: {key.new_because}):"


def banner(port: int, env_file: Path, key: DemoKey) -> str:
    return "\n".join(
        [
            "",
            f"audit-ingest is serving on http://127.0.0.1:{port} (inline auth mode)",
            f"stack addresses: {env_file}  (the CLI reads it: {CLI} keys list)",
            f"demo tenant {key.tenant_id}",
            describe_key(key),
            f"  {key.secret}",
            f"kept in {key.file} (mode 0600; a local development convenience) for the next runs:",
            f"  export KEY=$(cat {key.file})",
            "",
            "Try it:",
            "",
            CURL.format(port=port, key=key.secret),
            "",
            "Ctrl-C stops everything; the data stays in .dev/ for the next run.",
        ]
    )


def stopped_message(stopped: list[str], kept: list[str], functions: bool) -> str:
    """What a stop did, in one line, and where the data is."""
    parts = (["the functions"] if functions else []) + [NAMES.get(n, n) for n in stopped]
    done = f"stopped {', '.join(parts)}" if parts else "nothing was running"
    if kept:
        done += f" ({', '.join(NAMES.get(n, n) for n in kept)}: external, left running)"
    return (
        f"{done}. The data stays in {ROOT}/ (databases, Kafka topics, the demo key): the next "
        "`make run` picks it up; `make clean` deletes it."
    )


class Stop(BaseException):
    """Ctrl-C or SIGTERM: stop what was started (raised once, from the signal handler)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_on_signals() -> None:
    """The first SIGINT or SIGTERM raises `Stop`; later ones are ignored.

    `uv run` forwards the terminal's Ctrl-C to this process, which got it from the terminal
    already: each Ctrl-C arrives twice, and the second must not cut the stop short.
    """
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise Stop(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    show_progress()
    stop_on_signals()
    began = time.monotonic()
    ROOT.mkdir(exist_ok=True)
    stack = LocalStack(root=ROOT)
    server: subprocess.Popen[bytes] | None = None
    interrupted = False  # by Ctrl-C, which the functions' process got too
    try:
        log.info("starting PostgreSQL, Redis and Kafka (data in %s/)…", ROOT)
        stack.start()
        env_file = stack.write_env_file(ROOT / "stack.env")
        with env_file.open("a") as handle:
            handle.write(f"INGEST_URL=http://127.0.0.1:{args.port}\n")
        settings = stack_settings(stack.env)
        log.info(
            "applying migrations; creating topics %s and %s",
            settings.kafka_topic,
            settings.kafka_dlq_topic,
        )
        provision(settings)
        key = demo_key(settings, KEY_FILE)
        env = {**os.environ, **stack.env, "K_SERVICE": "local", "K_REVISION": "local"}
        log.info("starting both functions on port %d…", args.port)
        server = subprocess.Popen(
            [sys.executable, "-m", "devstack.compose", "--port", str(args.port)], env=env
        )
        # /ready builds the app (producer, key store pool) as Knative's readiness probe does,
        # so the first curl is not also the cold start.
        wait_healthy(f"http://127.0.0.1:{args.port}/ready", server)
        log.info("serving %.1f s after `make run` began", time.monotonic() - began)
        print(banner(args.port, env_file, key), flush=True)
        code = server.wait()
        log.error("the functions exited on their own (code %d); see their log above", code)
        server = None
        return code or 1
    except Stop as stop:
        print(file=sys.stderr)
        interrupted = stop.signum == signal.SIGINT
        log.info("%s: stopping what `make run` started…", "Ctrl-C" if interrupted else stop)
        return 0
    except DevstackError as exc:
        log.error("%s", exc)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # nothing may cut the stop short
            signal.signal(sig, signal.SIG_IGN)
        functions = server is not None
        if server is not None and server.poll() is None:
            if interrupted:  # the Ctrl-C reached it too: let it finish on its own first
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.wait(timeout=2)
            server.terminate()
            try:
                server.wait(timeout=35)
            except subprocess.TimeoutExpired:
                server.kill()
        ours = [s.name for s in stack.services if s.process is not None]
        kept = [s.name for s in stack.services if s.external_url is not None]
        try:
            stack.stop()
        finally:
            log.info("%s", stopped_message(ours, kept, functions))


if __name__ == "__main__":
    sys.exit(main())
