"""`make run`: the stack, the schema, the topics, a demo key, and both functions on one port.

Ctrl-C stops everything this started; data stays in .dev/ for the next run.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from devstack.provision import provision, rotate_demo_key, stack_settings
from devstack.stack import LocalStack

ROOT = Path(".dev")
CURL = """curl -i http://127.0.0.1:{port}/v1/events \\
  -H 'Content-Type: application/json' \\
  -H 'X-API-Key: {key}' \\
  -d '{{"actor": {{"id": "user-123", "type": "user", "email": "user@example.com"}},
       "action": {{"name": "user.created"}},
       "resource": {{"type": "user", "id": "user-456"}},
       "result": {{"success": true}}}}'"""


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    ROOT.mkdir(exist_ok=True)
    stack = LocalStack(root=ROOT)
    server: subprocess.Popen[bytes] | None = None
    try:
        stack.start()
        env_file = stack.write_env_file(ROOT / "stack.env")
        with env_file.open("a") as handle:
            handle.write(f"INGEST_URL=http://127.0.0.1:{args.port}\n")
        settings = stack_settings(stack.env)
        provision(settings)
        issued = rotate_demo_key(settings, ROOT / "demo-key.id")
        env = {**os.environ, **stack.env, "K_SERVICE": "local", "K_REVISION": "local"}
        server = subprocess.Popen(
            [sys.executable, "-m", "devstack.compose", "--port", str(args.port)], env=env
        )
        # /ready builds the app (producer, key store pool) as Knative's readiness probe does,
        # so the first curl is not also the cold start.
        wait_healthy(f"http://127.0.0.1:{args.port}/ready", server)
        print()
        print(f"audit-ingest is serving on http://127.0.0.1:{args.port} (inline auth mode)")
        print(f"stack addresses: {env_file}  (the CLI reads it: uv run audit-ingest keys list)")
        print(f"demo tenant {issued.stored.tenant_id}, demo API key (shown once):")
        print(f"  {issued.secret}")
        print("\nTry it:\n")
        print(CURL.format(port=args.port, key=issued.secret))
        print("\nCtrl-C stops everything.", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: server.terminate() if server else None)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=35)
            except subprocess.TimeoutExpired:
                server.kill()
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
