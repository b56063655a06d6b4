"""python -m devstack {up,down,fetch-kafka}."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from devstack.errors import DevstackError
from devstack.kafka_libs import ensure_kafka_libs
from devstack.ports import StackPorts
from devstack.stack import LocalStack

log = logging.getLogger("devstack")
HEALTH_INTERVAL_S = 2.0


def _parser() -> argparse.ArgumentParser:
    defaults = StackPorts()
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack and stay in the foreground until Ctrl-C")
    down = sub.add_parser("down", help="stop servers left running under --root (pid files)")
    fetch = sub.add_parser("fetch-kafka", help="fetch the Kafka jars into the cache only")
    for cmd in (up, down, fetch):
        cmd.add_argument("--root", type=Path, default=Path(".dev"), help="state dir (.dev)")
    up.add_argument("--env-file", type=Path, help="default: <root>/stack.env")
    for name in ("postgres", "redis", "kafka", "kafka_controller"):
        up.add_argument(
            f"--{name.replace('_', '-')}-port", dest=name, type=int, default=getattr(defaults, name)
        )
    fetch.add_argument("--dest", type=Path, help="default: <root>/kafka-libs")
    return parser


def _wait_for_signal(stack: LocalStack) -> int:
    """Block until SIGINT/SIGTERM (0) or until a server dies (1)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    while not stop.wait(HEALTH_INTERVAL_S):
        dead = [s.name for s in stack.services if s.process is not None and not s.is_running()]
        if dead:
            log.error("%s exited unexpectedly; see its log under %s", ", ".join(dead), stack.root)
            return 1
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    ports = StackPorts(args.postgres, args.redis, args.kafka, args.kafka_controller)
    stack = LocalStack(root=args.root, ports=ports)
    try:
        stack.start()
        env_file = stack.write_env_file(args.env_file or stack.root / "stack.env")
        for key, value in stack.env.items():
            print(f"{key}={value}")
        timings = ", ".join(f"{k} {v:.1f}s" for k, v in stack.timings.items())
        print(f"# ready ({timings}); env written to {env_file}; Ctrl-C to stop", flush=True)
        return _wait_for_signal(stack)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop
        stack.stop()


def cmd_down(args: argparse.Namespace) -> int:
    stopped = LocalStack(root=args.root).stop_leftovers()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def cmd_fetch_kafka(args: argparse.Namespace) -> int:
    started = time.monotonic()
    dest = ensure_kafka_libs(args.dest or args.root / "kafka-libs")
    print(f"Kafka jars in {dest} ({time.monotonic() - started:.1f}s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    commands = {"up": cmd_up, "down": cmd_down, "fetch-kafka": cmd_fetch_kafka}
    try:
        return commands[args.command](args)
    except DevstackError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
