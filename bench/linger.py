"""The broker's CPU per single event against the producer's linger (issue 12's broker row).

    uv run python -m bench.linger [--lingers 0,2,5,10] [--rate 1000] [--seconds 20] [--rounds 3]

`ingest-event` (inline mode, one worker) pinned to CPU 0 with `KAFKA_LINGER_MS` set to each
value in turn; the Go generator, Kafka, Redis and PostgreSQL on CPU 1. Each point offers
`--rate` single-event requests per second open loop (coordinated-omission corrected) and
reads, around the run, the CPU time of the broker, Redis and the function from
/proc; and before it, for `--idle` seconds without load, the same processes' idle burn, which
the net figures subtract. The values are alternated within each round (0, 2, 5, 10, then
again), so a change in the machine's state falls on every value alike; the figure per value
is the median of the rounds. A first point, not kept, warms the broker's JVM.

A longer linger lets more records share one produce request (all of a tenant's records go to
one partition): fewer requests for the broker to parse, append and answer per event, at the
price of up to `linger` ms more latency per request.

Prints a table and writes bench/results/<timestamp>-linger.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import bodies, generator, procs
from bench.run import PORTS, WORK, machine_info
from bench.stack import REPO, acquire, pin

RESULTS = REPO / "bench" / "results"
FIGURES = (
    "broker_us",
    "broker_net_us",
    "broker_idle_cores",
    "redis_us",
    "redis_net_us",
    "function_us",
    "function_net_us",
    "p50_ms",
    "p99_ms",
    "achieved_rps",
)


def summarise(points: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Per linger value, the median of each figure over the rounds, and the error count."""
    by_linger: dict[int, list[dict[str, Any]]] = {}
    for point in points:
        by_linger.setdefault(int(point["linger_ms"]), []).append(point)
    summary: dict[int, dict[str, float]] = {}
    for linger, runs in sorted(by_linger.items()):
        row = {name: round(statistics.median(run[name] for run in runs), 3) for name in FIGURES}
        row["errors"] = float(sum(run["errors"] for run in runs))
        row["rounds"] = float(len(runs))
        summary[linger] = row
    return summary


def table(summary: dict[int, dict[str, float]]) -> str:
    lines = [
        "| linger.ms | broker CPU µs/event (net of idle) | broker idle (cores) "
        "| Redis µs/event (net) | function µs/event (net) | p50 ms | p99 ms | req/s | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for linger, row in summary.items():
        lines.append(
            f"| {linger} | {row['broker_us']:.1f} ({row['broker_net_us']:.1f}) "
            f"| {row['broker_idle_cores']:.3f} "
            f"| {row['redis_us']:.1f} ({row['redis_net_us']:.1f}) "
            f"| {row['function_us']:.0f} ({row['function_net_us']:.0f}) "
            f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} "
            f"| {row['achieved_rps']:,.0f} | {row['errors']:.0f} |"
        )
    return "\n".join(lines)


def _point(
    args: argparse.Namespace,
    linger: int,
    env: dict[str, str],
    stack_pids: dict[str, int],
    api_key: str,
    binary: Path,
    body: Path,
) -> dict[str, Any]:
    function = procs.start(
        "ingest_event",
        PORTS["ingest_event"],
        {**env, "KAFKA_LINGER_MS": str(linger)},
        WORK / "logs",
        cpu="0",
    )
    try:
        # The idle burn first (the broker's controller and timers, the producer's threads):
        # it is reported, and subtracted for the net figures, since it is paid at any rate.
        idle0 = _cpu(function, stack_pids), time.monotonic()
        time.sleep(args.idle)
        idle1 = _cpu(function, stack_pids), time.monotonic()
        idle_rate = {n: (idle1[0][n] - idle0[0][n]) / (idle1[1] - idle0[1]) for n in idle1[0]}
        loaded0 = _cpu(function, stack_pids), time.monotonic()
        result = generator.offer_single_events(
            binary,
            function_url=function.url,
            body=body,
            api_key=api_key,
            rate=args.rate,
            conns=args.conns,
            duration=args.seconds,
            warmup=args.warmup,
            label=f"linger-{linger}",
        )
        loaded1 = _cpu(function, stack_pids), time.monotonic()
    finally:
        function.stop()
    # The CPU deltas span the warm-up too (the generator runs both in one process), so they
    # are divided by every 202 of the run, warm-up included.
    accepted = max(1, int(result["ok_all"]))
    wall = loaded1[1] - loaded0[1]
    used = {n: loaded1[0][n] - loaded0[0][n] for n in loaded1[0]}
    point: dict[str, Any] = {
        "linger_ms": linger,
        "p50_ms": result["latency_ms"]["p50"],
        "p99_ms": result["latency_ms"]["p99"],
        "achieved_rps": result["rate_achieved"],
        "errors": int(result["error_total"]),
        "accepted_all": int(result["ok_all"]),
        "wall_s": round(wall, 2),
    }
    for name, seconds in used.items():
        point[f"{name}_us"] = seconds / accepted * 1e6
        point[f"{name}_net_us"] = max(0.0, seconds - idle_rate[name] * wall) / accepted * 1e6
        point[f"{name}_idle_cores"] = idle_rate[name]
    return point


def _cpu(function: procs.FunctionProcess, stack_pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far: the function (all its processes), the broker and Redis."""
    return {
        "function": function.cpu(),
        "broker": procs.cpu_seconds(stack_pids["kafka"]),
        "redis": procs.cpu_seconds(stack_pids["redis"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lingers", default="0,2,5,10", help="comma list of linger.ms values")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conns", type=int, default=256)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle baseline")
    parser.add_argument("--stack", choices=("auto", "own", "running"), default="own")
    args = parser.parse_args(argv)
    lingers = [int(value) for value in args.lingers.split(",")]
    build = generator.ensure_built()
    paths = bodies.write(WORK / "bodies")
    stack = acquire(args.stack)
    started = datetime.now(UTC)
    points: list[dict[str, Any]] = []
    try:
        pinned = pin(stack.pids, "1")
        # The stack's own bench key: its quota never binds (the limiter still runs).
        env, api_key = stack.function_env(), stack.api_key
        # A point that is not kept: a fresh broker's JVM compiles its hot paths in the first
        # seconds of load, which would count against whichever value comes first.
        warm = argparse.Namespace(**{**vars(args), "seconds": 5.0})
        _point(warm, lingers[0], env, stack.pids, api_key, build.path, paths["single"])
        for round_number in range(args.rounds):
            for linger in lingers:
                point = _point(args, linger, env, stack.pids, api_key, build.path, paths["single"])
                point["round"] = round_number + 1
                points.append(point)
                print(json.dumps(point), file=sys.stderr, flush=True)
                time.sleep(1.0)
    finally:
        stack.close()
    summary = summarise(points)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}-linger.json"
    document = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "command": "python -m bench.linger " + " ".join(sys.argv[1:]),
        "settings": vars(args),
        "pinned_infra": pinned,
        "points": points,
        "summary": {str(k): v for k, v in summary.items()},
    }
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(table(summary))
    print(f"results: {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
