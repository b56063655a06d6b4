"""A/B of CPU per request: the same closed-loop load on two copies of the code, alternated.

    uv run python -m bench.ab --a /tmp/before --b . [--scenario single] [--rounds 3]
        [--rate 1000] [--env NAME=VALUE ...] [--a-env NAME=VALUE ...]

`--env` sets a setting for both sides, `--a-env` for A only: `--a . --a-env
COMPILED_PIPELINE=false` compares this checkout's Python pipeline with its compiled path.

For a noisy machine: CPU microseconds per event of the function process (from /proc) move far
less with other load than throughput does. Needs a running bench stack (`--stack`, as bench.run).
Closed loop by default (the most requests per loop turn); `--rate` offers that many requests a
second open loop instead, as issue 12's targets at 1,000 single / 20 batch req/s are measured:
there each request wakes the loop on its own, and costs more.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench import bodies, generator, procs
from bench.run import PORTS, SCENARIOS, WORK
from bench.stack import REPO, acquire


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--a", type=Path, required=True)
    parser.add_argument("--b", type=Path, default=REPO)
    parser.add_argument("--scenario", default="single", choices=sorted(SCENARIOS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--conns", type=int)
    parser.add_argument("--rate", type=float, help="open loop at this many requests a second")
    parser.add_argument("--stack", default="auto")
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--a-env", action="append", default=[])
    args = parser.parse_args()
    build = generator.ensure_built()
    paths = bodies.write(WORK / "bodies")
    stack = acquire(args.stack)
    spec = SCENARIOS[args.scenario]
    env = {**stack.env, "K_SERVICE": "bench", "K_REVISION": "bench", "PATH": "/usr/bin:/bin"}
    env.update(dict(kv.split("=", 1) for kv in args.env))
    envs = {"a": {**env, **dict(kv.split("=", 1) for kv in args.a_env)}, "b": env}
    seen: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}
    try:
        for _ in range(args.rounds):
            for name, root in (("a", args.a.resolve()), ("b", args.b.resolve())):
                function = procs.start(
                    spec["target"], PORTS[spec["target"]], envs[name], WORK / "logs", code_root=root
                )
                try:
                    cpu0 = function.cpu()
                    result = generator.run(
                        build.path,
                        url=function.url + spec["path"],
                        body=paths[args.scenario],
                        headers={"Content-Type": "application/json", "X-API-Key": stack.api_key},
                        mode="open" if args.rate else "closed",
                        conns=args.conns or spec["closed_conns"],
                        duration=args.duration,
                        warmup=1.0,
                        rate=args.rate,
                        expect=spec["expect"],
                    )
                    used = function.cpu() - cpu0
                finally:
                    function.stop()
                events = result["ok_all"] * bodies.SIZES[args.scenario]
                per_event = used / events * 1e6
                seen[name].append((per_event, result["rate_achieved"]))
                print(
                    f"{name}: {per_event:7.1f} µs CPU/event, {result['rate_achieved']:8.1f} req/s, "
                    f"p99 {result['latency_ms']['p99']:.1f} ms, errors {result['errors']}",
                    flush=True,
                )
                time.sleep(1)
    finally:
        stack.close()
    for name in ("a", "b"):
        cpu = [c for c, _ in seen[name]]
        rate = [r for _, r in seen[name]]
        print(
            f"{name}: median {statistics.median(cpu):.1f} µs/event "
            f"[{min(cpu):.1f}-{max(cpu):.1f}], {statistics.median(rate):.1f} req/s"
        )


if __name__ == "__main__":
    main()
