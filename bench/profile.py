"""Profile a function under load with py-spy, and summarise where its CPU goes.

    uv run python -m bench.profile --endpoint single [--seconds 15] [--rate 0]
    uv run python -m bench.profile --summarise bench/results/profile-single.txt

Starts the bench stack (as `bench.run` does), the function pinned to CPU 0, the load generator
on CPU 1 (closed loop, or open loop at --rate), and samples the worker with py-spy (`--native`
off, GIL-holding samples only: CPU, not waiting). The summary lists functions by inclusive and
by self share of the samples, grouped into the request's stages.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

# Stage of a frame, by the first matching pattern (module path or function name).
STAGES: tuple[tuple[str, str], ...] = (
    ("redis", r"redis/|redis_limiter|redis_idempotency"),
    ("kafka produce/ack", r"adapters/kafka\.py|confluent_kafka"),
    ("records (value + headers)", r"domain/records\.py|cloudevents/"),
    ("validation (pydantic)", r"domain/validation\.py|pydantic"),
    ("enrichment", r"domain/enrichment\.py"),
    ("parsing", r"http/parsing\.py|orjson"),
    ("auth + key cache", r"auth\.py|keycache\.py|domain/keys\.py"),
    ("access log", r"logs\.py|logging/|pythonjsonlogger"),
    ("metrics", r"prometheus_client"),
    ("timestamps (parse, format)", r"domain/timestamps\.py"),
    ("dataclass construction", r"__create_fn__"),
    ("uuid7 ids", r"uuid6/|uuid\.py"),
    ("our code: endpoint, service, glue", r"audit_ingest/|\(main\.py"),
    ("framework (starlette, functions-framework)", r"starlette/|functions_framework/"),
    ("server (uvicorn, httptools)", r"uvicorn/|httptools"),
    ("event loop (uvloop/asyncio)", r"uvloop|asyncio/"),
)

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:]*)(?::(?P<line>\d+))?\)$")


def parse_collapsed(path: Path) -> list[tuple[list[str], int]]:
    """py-spy `--format raw` lines: 'frame;frame;... count', root first."""
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    file = match["file"]
    for marker in ("site-packages/", "shared/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match['func']} ({file})"


def stage_of(stack: list[str]) -> str:
    """The innermost frame that names a stage wins (what the time was spent doing)."""
    for frame in reversed(stack):
        for stage, pattern in STAGES:
            if re.search(pattern, frame):
                return stage
    return "other"


def summarise(path: Path, top: int = 25) -> str:
    stacks = parse_collapsed(path)
    total = sum(count for _, count in stacks) or 1
    inclusive: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    stages: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        # Drop thread-name pseudo frames py-spy adds at the root.
        named = [f for f in frames if not f.startswith(("process ", "thread "))]
        for frame in set(map(_short, named)):
            inclusive[frame] += count
        if named:
            self_[_short(named[-1])] += count
        stages[stage_of(named)] += count
    lines = [f"samples: {total}", "", "by stage (innermost matching frame):"]
    for stage, count in stages.most_common():
        lines.append(f"  {100 * count / total:5.1f}%  {stage}")
    lines += ["", f"top {top} by inclusive share:"]
    for frame, count in inclusive.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {frame}")
    lines += ["", f"top {top} by self share:"]
    for frame, count in self_.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {frame}")
    return "\n".join(lines)


def record(pid: int, seconds: float, out: Path, *, rate: int = 250) -> None:
    """py-spy record of `pid` (GIL-holding samples only) into `out` (collapsed stacks)."""
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    argv = [py_spy] if py_spy else ["uvx", "py-spy"]
    subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            *argv,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            str(rate),
            "--gil",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        check=True,
        capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--summarise", type=Path, help="summarise an existing collapsed profile")
    parser.add_argument("--pid", type=int, help="profile this running worker instead")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--out", type=Path, default=Path("bench/results/profile.txt"))
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if args.summarise:
        print(summarise(args.summarise, args.top))
        return
    if args.pid:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record(args.pid, args.seconds, args.out)
        print(summarise(args.out, args.top))
        return
    parser.error("give --summarise FILE or --pid PID")


if __name__ == "__main__":
    main()
