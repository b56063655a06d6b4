"""`make bench`: the framework floor, the Kafka floor and our functions, measured in one run.

    uv run python -m bench.run [--reps 3] [--duration 8] [--stack auto|own|running] [--quick]

- B0f: functions-framework (ASGI mode: gunicorn + uvicorn worker, the functions' settings)
  serving a handler that only answers 202: closed-loop maximum rate.
- B1: the functions' producer settings and records, straight from Python (bench.kafka_floor).
- S: ingest-event and ingest-batch on the real path (auth, a rate limit that does not bind,
  validation, enrichment, produce, ack): single event, batch of 100, batch of 1000; closed
  loop for the maximum, then an open-loop, coordinated-omission corrected sweep of offered
  rates until p99 passes 100 ms or errors appear.
- paths: the costs a plain JSON body hides (gzip, CloudEvents binary and structured mode,
  idempotency keys) and gateway mode (`authorize` + `ingest-event` as APISIX calls them),
  each offered open loop at the rate the plain body's targets name (1,000 single req/s, 20
  batch req/s): function CPU per event and p99, against the plain body's at that rate in the
  same repetition.
- cold start: exec of the functions-framework CLI to the first acknowledged 202.

The functions (and B1) run on CPU 0, the Go generator on CPU 1 (`taskset`). Results go to
bench/results/<timestamp>.json; the report to docs/benchmarks.md (between its markers) and the
latency plot to docs/benchmarks-latency.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit_ingest.domain.gateway_token import PRINCIPAL_HEADER, sign_principal
from audit_ingest.domain.principal import Principal
from bench import bodies, generator, interpreter, procs, report
from bench.stack import BENCH_TENANT, REPO, BenchStack, acquire, pin

log = logging.getLogger("bench")

RESULTS = REPO / "bench" / "results"
WORK = REPO / ".dev" / "bench"
SERVICE_CPU = "0"
GENERATOR_CPU = "1"
PORTS = {"noop": 18090, "ingest_event": 18081, "ingest_batch": 18082, "authorize": 18083}
KNEE_P99_MS = 100.0

# Per body: path, connections (closed loop; open loop's ceiling on requests in flight),
# rates that targets name (always measured), and the success check of a 202 body.
SCENARIOS: dict[str, dict[str, Any]] = {
    "single": {
        "path": "/v1/events",
        "target": "ingest_event",
        "closed_conns": 128,
        "open_conns": 256,
        "fixed": [500.0, 1000.0],
        "expect": '"event_id"',
    },
    "batch100": {
        "path": "/v1/events/batch",
        "target": "ingest_batch",
        "closed_conns": 16,
        "open_conns": 64,
        "fixed": [20.0],
        "expect": '"rejected":0',
    },
    "batch1000": {
        "path": "/v1/events/batch",
        "target": "ingest_batch",
        "closed_conns": 8,
        "open_conns": 32,
        "fixed": [],
        "expect": '"rejected":0',
        "ladder": (0.25, 0.5, 0.7, 0.85, 1.0, 1.1),
        "min_requests": 120,
    },
}
# The paths a plain JSON body does not exercise (issue 12's hidden costs), each offered open
# loop at its plain scenario's PATH_RATES rate, where the plain body is measured too: at one
# arrival rate, requests share loop turns alike, so the CPU per event compares the work (a
# closed loop would also compare how fast the generator makes each kind of request: gzipping
# them on its core slowed it enough to change the service's batching). Connections and the
# success check are the plain scenario's.
# name -> (the plain scenario it is compared with, transport, keyed)
PATHS: dict[str, tuple[str, str, bool]] = {
    "single-gzip": ("single", "gzip", False),
    "single-ce-binary": ("single", "ce-binary", False),
    "single-keyed": ("single", "json", True),
    "batch100-gzip": ("batch100", "gzip", False),
    "batch100-ce-structured": ("batch100", "ce-structured", False),
    "batch100-keyed": ("batch100", "json", True),
}
PATH_RATES = {"single": 1000.0, "batch100": 20.0}
# Gateway mode, as APISIX calls the functions (apisix/standalone/apisix.yaml): forward-auth's
# GET to `authorize` with the client's key, then the ingest call with the signed principal.
GATEWAY_SECRET = "bench-gateway-signing-secret-0123456789abcdef"  # noqa: S105  (bench only)
GATEWAY_PORT = 18084
# Offered rates of the sweep, as fractions of the closed-loop maximum (first repetition's).
LADDER = (0.1, 0.25, 0.4, 0.5, 0.6, 0.68, 0.76, 0.84, 0.92, 1.0, 1.1)


# -- machine state ---------------------------------------------------------------------------
def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    ticks = procs.CLOCK_TICKS
    return (total - idle) / ticks, total / ticks


def machine_busy(seconds: float) -> float:
    """Cores busy (0..nproc) over `seconds`, everything included."""
    b0, _ = busy_seconds()
    time.sleep(seconds)
    b1, _ = busy_seconds()
    return round((b1 - b0) / seconds, 3)


def wait_quiet(threshold: float, timeout: float, interval: float = 30.0) -> dict[str, Any]:
    """Wait until the 1-minute load average is below `threshold` (at most `timeout` s)."""
    started = time.monotonic()
    first = load_average()
    while load_average()[0] >= threshold and time.monotonic() - started < timeout:
        log.info("waiting for a quiet machine: load %s (want < %.2f)", load_average(), threshold)
        time.sleep(interval)
    waited = time.monotonic() - started
    now = load_average()
    return {
        "load_when_asked": first,
        "load_at_start": now,
        "waited_s": round(waited, 1),
        "quiet": now[0] < threshold,
        "busy_cores_5s": machine_busy(5.0),
    }


def _read(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unavailable"


def machine_info() -> dict[str, Any]:
    service_python = interpreter.describe(interpreter.service_python())
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        # The services' interpreter (bench.interpreter), not the harness's: the one measured.
        "python": service_python["python"],
        "service_python": service_python,
    }


def versions(stack: BenchStack) -> dict[str, str]:
    from importlib.metadata import version

    import confluent_kafka

    found = {
        name: version(name)
        for name in (
            "functions-framework",
            "gunicorn",
            "uvicorn",
            "uvicorn-worker",
            "uvloop",
            "httptools",
            "starlette",
            "pydantic",
            "pydantic-core",
            "orjson",
            "confluent-kafka",
            "redis",
            "psycopg",
        )
    }
    found["librdkafka"] = confluent_kafka.libversion()[0]
    libs = sorted((REPO / ".dev" / "kafka-libs").glob("kafka_2.13-*.jar"))
    found["kafka (broker)"] = libs[0].stem.split("-", 1)[1] if libs else "external"
    found["go"] = generator.go_version().split()[0].removeprefix("go")
    redis_server = _read([str(Path(sys.executable).parent / "redis-server"), "--version"])
    found["redis-server"] = (
        redis_server.split(" v=", 1)[-1].split()[0] if " v=" in redis_server else redis_server
    )
    return found


# -- measurements ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """What the generator sends in one run: `__SEQ__` in the body or a header is filled per
    request; `size` is the events a request carries."""

    path: str
    body: Path | None
    headers: dict[str, str]
    expect: str | None
    size: int
    label: str
    method: str = "POST"
    status: int = 202
    gzip: bool = False


class Runner:
    def __init__(
        self,
        args: argparse.Namespace,
        stack: BenchStack,
        paths: dict[str, Path],
        binary: Path,
    ) -> None:
        self.args = args
        self.stack = stack
        self.paths = paths
        self.binary = binary
        self.logs = WORK / "logs"
        self.ladders: dict[str, list[float]] = {}
        self.env = {
            **os.environ,
            **stack.env,
            "K_SERVICE": "bench",
            "K_REVISION": "bench",
        }
        self.env.pop("PYTHONPATH", None)
        self.env.update(dict(kv.split("=", 1) for kv in args.env))

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "X-API-Key": self.stack.api_key}

    def infra_cpu(self) -> dict[str, float]:
        return {name: procs.cpu_seconds(pid) for name, pid in self.stack.pids.items()}

    def load(
        self,
        function: procs.FunctionProcess,
        scenario: str,
        mode: str,
        *,
        rate: float | None = None,
        duration: float | None = None,
        request: Request | None = None,
    ) -> dict[str, Any]:
        """One generator run against `function`; `scenario` names the plain body's settings
        (path, connections, success check) unless `request` replaces them."""
        spec = SCENARIOS[scenario]
        if request is None:
            request = Request(
                path=spec["path"],
                body=self.paths[scenario],
                headers=self.headers(),
                expect=spec["expect"] if function.target != "noop" else None,
                size=bodies.SIZES[scenario],
                label=scenario,
            )
        duration = duration or self.args.duration
        before = function.cpu(), self.infra_cpu(), time.monotonic()
        machine_before = busy_seconds()[0]
        result = generator.run(
            self.binary,
            url=function.url + request.path,
            body=request.body,
            headers=request.headers,
            mode=mode,
            conns=spec["closed_conns"] if mode == "closed" else spec["open_conns"],
            duration=duration,
            warmup=self.args.warmup,
            rate=rate,
            expect=request.expect,
            cpu=GENERATOR_CPU,
            label=f"{function.target}/{request.label}/{mode}",
            method=request.method,
            status=request.status,
            gzip=request.gzip,
        )
        cpu_after, infra_after, ended = function.cpu(), self.infra_cpu(), time.monotonic()
        machine_used = busy_seconds()[0] - machine_before
        events = result["ok_all"] * request.size
        result["events_per_request"] = request.size
        result["events_per_s"] = round(result["rate_achieved"] * request.size, 1)
        result["cpu"] = {
            "function_s": round(cpu_after - before[0], 3),
            "function_util": round((cpu_after - before[0]) / (ended - before[2]), 3),
            **{f"{n}_s": round(infra_after[n] - before[1][n], 3) for n in infra_after},
        }
        # What else ran on the two cores meanwhile (other people's work): the machine's busy
        # time minus ours (function, generator, our servers), in cores.
        ours = (
            (cpu_after - before[0])
            + result["generator_cpu_s"]
            + sum(infra_after[n] - before[1][n] for n in infra_after)
        )
        result["cpu"]["foreign_cores"] = round(
            max(0.0, machine_used - ours) / (ended - before[2]), 3
        )
        if events:
            result["cpu_us_per_event"] = {
                "function": round((cpu_after - before[0]) / events * 1e6, 1),
                **{
                    n: round((infra_after[n] - before[1][n]) / events * 1e6, 1) for n in infra_after
                },
            }
        log.info(
            "%-28s %-6s offered %-8s achieved %8.1f/s  p50 %7.2f  p99 %8.2f ms  errors %s  "
            "(others: %.2f cores)",
            result["label"],
            mode,
            f"{rate:.1f}" if rate else "-",
            result["rate_achieved"],
            result["latency_ms"]["p50"],
            result["latency_ms"]["p99"],
            result["errors"] or 0,
            result["cpu"]["foreign_cores"],
        )
        return result

    def start(
        self,
        target: str,
        workers: int | None = None,
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> procs.FunctionProcess:
        return procs.start(
            target,
            port or PORTS[target],
            {**self.env, **(env or {})},
            self.logs,
            workers=workers or self.args.workers,
            cpu=SERVICE_CPU,
            code_root=self.args.code_root,
        )

    def framework_floor(self, workers: int | None = None) -> dict[str, Any]:
        function = self.start("noop", workers)
        try:
            return self.load(function, "single", "closed")
        finally:
            function.stop()

    def kafka_floor(self) -> dict[str, Any]:
        out = WORK / "b1.json"
        env = dict(self.env)
        if self.args.code_root != REPO:
            env["PYTHONPATH"] = str(self.args.code_root / "shared")
        before = self.infra_cpu()
        started = time.monotonic()
        subprocess.run(
            [
                "taskset",
                "-c",
                SERVICE_CPU,
                str(interpreter.service_python()),
                "-m",
                "bench.kafka_floor",
                "--body",
                str(self.paths["single"]),
                "--out",
                str(out),
                *(
                    ["--flat", "30000", "--awaited", "500", "--flushes", "100"]
                    if self.args.quick
                    else []
                ),
            ],
            cwd=REPO,
            env=env,
            check=True,
        )
        result: dict[str, Any] = json.loads(out.read_text())
        after = self.infra_cpu()
        result["infra_cpu_s"] = {n: round(after[n] - before[n], 3) for n in after}
        result["wall_s"] = round(time.monotonic() - started, 2)
        log.info(
            "B1 kafka floor: %.0f events/s, awaited p50 %.2f p99 %.2f ms, flush100 p99 %.2f ms",
            result["events_per_s"],
            result["awaited_ms"]["p50"],
            result["awaited_ms"]["p99"],
            result["flush100_ms"]["p99"],
        )
        return result

    def ladder(self, scenario: str, closed_max: float) -> list[float]:
        if scenario not in self.ladders:
            spec = SCENARIOS[scenario]
            ladder = spec.get("ladder", LADDER)
            rates = {round(closed_max * f, 1 if closed_max < 50 else 0) for f in ladder}
            rates |= set(spec["fixed"])
            self.ladders[scenario] = sorted(r for r in rates if r > 0)
        return self.ladders[scenario]

    def sweep(
        self, function: procs.FunctionProcess, scenario: str, closed_max: float
    ) -> list[dict[str, Any]]:
        """Open-loop points, ascending, until one fails the knee rule (fixed rates still run)."""
        points: list[dict[str, Any]] = []
        failed = False
        last_pass = 0.0
        for rate in self.ladder(scenario, closed_max):
            if failed and rate not in SCENARIOS[scenario]["fixed"]:
                continue
            point = self.open_point(function, scenario, rate)
            points.append(point)
            if point["passes_knee_rule"] and not failed:
                last_pass = rate
            elif not failed:
                failed = True
                # One bisection step between the last pass and the first failure: the ladder
                # is coarse exactly where the knee is.
                middle = round((last_pass + rate) / 2, 1 if rate < 50 else 0)
                if last_pass < middle < rate:
                    points.append(self.open_point(function, scenario, middle))
        return points

    def open_point(
        self, function: procs.FunctionProcess, scenario: str, rate: float
    ) -> dict[str, Any]:
        duration = self.open_duration(scenario, rate)
        point = self.load(function, scenario, "open", rate=rate, duration=duration)
        point["passes_knee_rule"] = passes(point)
        if not point["passes_knee_rule"]:
            time.sleep(2)  # let a saturated service drain before the next point
            # Once more: a stall of someone else's process on the shared cores must not end
            # the sweep (the first attempt is kept in the results).
            again = self.load(function, scenario, "open", rate=rate, duration=duration)
            again["passes_knee_rule"] = passes(again)
            again["first_attempt"] = point
            point = again
            if not point["passes_knee_rule"]:
                time.sleep(2)
        return point

    def scenario(self, function: procs.FunctionProcess, scenario: str) -> dict[str, Any]:
        closed = self.load(function, scenario, "closed")
        return {"closed": closed, "open": self.sweep(function, scenario, closed["rate_achieved"])}

    def services(self, workers: int | None = None, *, sweeps: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {}
        single = self.start("ingest_event", workers)
        try:
            if sweeps:
                out["single"] = self.scenario(single, "single")
            else:
                out["single"] = {
                    "closed": self.load(single, "single", "closed"),
                    "open": [
                        self.load(single, "single", "open", rate=r)
                        for r in SCENARIOS["single"]["fixed"]
                    ],
                }
        finally:
            single.stop()
        if not sweeps:
            return out
        batch = self.start("ingest_batch", workers)
        try:
            out["batch100"] = self.scenario(batch, "batch100")
            out["batch1000"] = self.scenario(batch, "batch1000")
        finally:
            batch.stop()
        return out

    def hidden_paths(self, plain_points: dict[str, Any] | None = None) -> dict[str, Any]:
        """Each of PATHS at its PATH_RATES rate, then gateway mode's two calls.

        `plain_points`: when given (the S stage did not run, so no plain open point is there to
        compare with), the plain body's point at each PATH_RATES rate is measured first, with
        the same function process, and stored there as `{scenario: {"open": [point]}}`.
        """
        out: dict[str, Any] = {}
        for target, scenario in (("ingest_event", "single"), ("ingest_batch", "batch100")):
            function = self.start(target)
            try:
                if plain_points is not None:
                    plain_points[scenario] = {"open": [self.path_point(function, scenario)]}
                for name, (plain, transport, keyed) in PATHS.items():
                    if plain != scenario:
                        continue
                    made = bodies.generator_request(plain, transport, keyed=keyed)
                    body = WORK / "bodies" / f"{name}.json"
                    body.write_bytes(made.body)
                    request = Request(
                        path=SCENARIOS[plain]["path"],
                        body=body,
                        headers={**made.headers, "X-API-Key": self.stack.api_key},
                        expect=SCENARIOS[plain]["expect"],
                        size=bodies.SIZES[plain],
                        label=name,
                        gzip=made.gzip,
                    )
                    out[name] = self.path_point(function, plain, request)
            finally:
                function.stop()
        out.update(self.gateway())
        return out

    def gateway(self) -> dict[str, Any]:
        """`authorize` as forward-auth calls it, and `ingest-event` in gateway mode with the
        principal `authorize` signs, each alone on the function core at 1,000 req/s."""
        env = {"AUTH_MODE": "gateway", "GATEWAY_SIGNING_SECRET": GATEWAY_SECRET}
        out: dict[str, Any] = {}
        authorize = self.start("authorize", env=env)
        try:
            out["gateway-authorize"] = self.path_point(
                authorize,
                "single",
                Request(
                    path="/authorize",
                    body=None,
                    headers={"X-API-Key": self.stack.api_key, "X-Request-Id": "bench-__SEQ__"},
                    expect='"tenant_id"',
                    size=1,
                    label="gateway-authorize",
                    method="GET",
                    status=200,
                ),
            )
        finally:
            authorize.stop()
        principal = Principal(
            str(BENCH_TENANT), self.stack.api_key_id, ("events:write",), 1_000_000_000
        )
        # One token for the run (APISIX fetches one per request; verifying costs the same).
        ttl = int(self.args.duration + self.args.warmup) + 600
        token = sign_principal(
            principal, secret=GATEWAY_SECRET.encode(), now=int(time.time()), ttl=ttl
        )
        ingest = self.start("ingest_event", env=env, port=GATEWAY_PORT)
        try:
            out["gateway-ingest"] = self.path_point(
                ingest,
                "single",
                Request(
                    path="/v1/events",
                    body=self.paths["single"],
                    headers={
                        "Content-Type": "application/json",
                        PRINCIPAL_HEADER: token,
                        "X-Request-Id": "bench-__SEQ__",
                    },
                    expect=SCENARIOS["single"]["expect"],
                    size=1,
                    label="gateway-ingest",
                ),
            )
        finally:
            ingest.stop()
        return out

    def path_point(
        self, function: procs.FunctionProcess, plain: str, request: Request | None = None
    ) -> dict[str, Any]:
        """`request` (default: the plain body) offered open loop at `plain`'s PATH_RATES rate,
        as long as its open points."""
        rate = PATH_RATES[plain]
        duration = self.open_duration(plain, rate)
        return self.load(function, plain, "open", rate=rate, duration=duration, request=request)

    def open_duration(self, scenario: str, rate: float) -> float:
        """Enough requests per open point for a p99 at low rates, within reason."""
        wanted = SCENARIOS[scenario].get("min_requests", 300)
        return float(min(30.0, max(self.args.duration, wanted / rate)))

    def cold_start(self) -> dict[str, Any]:
        """exec of the functions-framework CLI -> the first 202 (a real event, acknowledged)."""
        body = self.paths["single"].read_bytes().replace(b"__SEQ__", str(time.time_ns()).encode())
        function = procs.launch(
            "ingest_event",
            PORTS["ingest_event"],
            {**self.env, "WORKERS": str(self.args.workers)},
            self.logs,
            cpu=SERVICE_CPU,
            code_root=self.args.code_root,
        )
        try:
            status = post_when_up(function, body, self.stack.api_key)
            elapsed = time.monotonic() - function.started_at
        finally:
            function.stop()
        first = first_request_ms(function.log)
        log.info("cold start: %.3f s to the first %s (first request %s ms)", elapsed, status, first)
        return {
            "exec_to_first_202_s": round(elapsed, 3),
            "status": status,
            "first_request_ms": first,
        }


def post_when_up(
    function: procs.FunctionProcess, body: bytes, key: str, timeout: float = 60
) -> int:
    """POST once the port accepts a connection; the request waits in the backlog if needed."""
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if function.process.poll() is not None:
            raise RuntimeError(f"cold start: the function exited:\n{function.log.read_text()}")
        connection = http.client.HTTPConnection("127.0.0.1", function.port, timeout=timeout)
        try:
            connection.request(
                "POST",
                "/v1/events",
                body=body,
                headers={"Content-Type": "application/json", "X-API-Key": key},
            )
            status = connection.getresponse().status
            if status != 202:
                raise RuntimeError(f"cold start: first answer {status}")
            return status
        except ConnectionRefusedError:
            time.sleep(0.005)
        finally:
            connection.close()
    raise RuntimeError("cold start: no answer")


def first_request_ms(path: Path) -> float | None:
    for line in path.read_text(errors="replace").splitlines():
        if '"audit_ingest.access"' in line:
            try:
                return float(json.loads(line)["duration_ms"])
            except (ValueError, KeyError):
                return None
    return None


def passes(point: dict[str, Any]) -> bool:
    return bool(point["error_total"] == 0 and point["latency_ms"]["p99"] <= KNEE_P99_MS)


# -- main ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per point")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each")
    parser.add_argument("--workers", type=int, default=1, help="WORKERS of the functions")
    parser.add_argument(
        "--compare-workers",
        type=int,
        default=2,
        help="also measure B0f and single with this many workers (0: skip)",
    )
    parser.add_argument("--stack", choices=("auto", "own", "running"), default="auto")
    parser.add_argument(
        "--infra-cpu",
        default=GENERATOR_CPU,
        help="pin the bench's own Kafka, Redis and PostgreSQL here ('' : leave them be)",
    )
    parser.add_argument("--quick", action="store_true", help="1 repetition, short points")
    parser.add_argument("--only", default="", help="comma list: b0f,b1,s,paths,workers,cold")
    parser.add_argument("--quiet-load", type=float, default=0.7)
    parser.add_argument("--quiet-timeout", type=float, default=1200.0)
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    parser.add_argument("--cold-starts", type=int, default=3)
    parser.add_argument(
        "--code-root",
        type=Path,
        default=REPO,
        help="run the functions from another copy of the code (a 'before' measurement)",
    )
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the functions")
    parser.add_argument("--name", default="", help="suffix of the results file")
    parser.add_argument("--no-docs", action="store_true", help="write the results file only")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.duration, args.warmup, args.cold_starts = 1, 4.0, 1.0, 1
    args.code_root = args.code_root.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    only = set(filter(None, args.only.split(","))) or {
        "b0f",
        "b1",
        "s",
        "paths",
        "workers",
        "cold",
    }
    if (os.cpu_count() or 1) < 2:
        global GENERATOR_CPU
        log.warning("one core: the generator and the service cannot be pinned apart")
        GENERATOR_CPU = SERVICE_CPU
        args.infra_cpu = SERVICE_CPU if args.infra_cpu else ""
    started = datetime.now(UTC)
    build = generator.ensure_built()
    log.info(
        "loadgen: %s (%s)",
        build.path.name,
        f"built in {build.seconds:.1f} s" if build.seconds is not None else "cached",
    )
    WORK.mkdir(parents=True, exist_ok=True)
    paths = bodies.write(WORK / "bodies")
    stack = acquire(args.stack)
    log.info("stack: %s (%s)", stack.kind, ", ".join(f"{k}={v}" for k, v in stack.env.items()))
    infra = "not pinned (the scheduler's choice)"
    if stack.kind == "own" and args.infra_cpu:
        # Our own servers only: `make run`'s belong to whoever started it.
        pinned = pin(stack.pids, args.infra_cpu)
        infra = f"CPU {args.infra_cpu} ({', '.join(pinned)}), with the generator"
    runner = Runner(args, stack, paths, build.path)
    results: dict[str, Any] = {
        "schema": 1,
        "started": started.isoformat(),
        "command": " ".join(["python -m bench.run", *map(shlex.quote, sys.argv[1:])]),
        "machine": machine_info(),
        "versions": versions(stack),
        "settings": {
            "reps": args.reps,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "workers": args.workers,
            "stack": stack.kind,
            "pinning": {
                "functions_and_b1": f"CPU {SERVICE_CPU}",
                "generator": f"CPU {GENERATOR_CPU}",
                "kafka_redis_postgres": infra,
            },
            "knee_rule": f"p99 <= {KNEE_P99_MS:g} ms and no errors",
            "scenarios": SCENARIOS,
            "code_root": str(args.code_root),
            "env": args.env,
            "function_env": {
                k: v
                for k, v in runner.env.items()
                if k in ("LOG_LEVEL", "WORKERS") or k.startswith(("KAFKA_", "REDIS_T"))
            },
        },
        "loadgen_build": {
            "binary": build.path.name,
            "seconds": build.seconds,
            "go": build.go_version,
        },
        "reps": [],
    }
    try:
        for rep in range(args.reps):
            quiet = (
                {"load_at_start": load_average(), "waited_s": 0, "busy_cores_5s": machine_busy(5)}
                if args.no_wait
                else wait_quiet(args.quiet_load, args.quiet_timeout if rep == 0 else 300)
            )
            log.info("repetition %d/%d, machine: %s", rep + 1, args.reps, quiet)
            one: dict[str, Any] = {"machine": quiet}
            if "b0f" in only:
                one["b0f"] = runner.framework_floor()
            if "b1" in only:
                one["b1"] = runner.kafka_floor()
            if "s" in only:
                one.update(runner.services())
            if "paths" in only:
                # Without the S stage, the paths stage measures its own plain points.
                one["paths"] = runner.hidden_paths(None if "s" in only else one)
            if "workers" in only and args.compare_workers:
                one["workers_compare"] = {
                    "workers": args.compare_workers,
                    "b0f": runner.framework_floor(args.compare_workers),
                    **runner.services(args.compare_workers, sweeps=False),
                }
            one["machine"]["load_at_end"] = load_average()
            results["reps"].append(one)
        if "cold" in only:
            results["coldstart"] = [runner.cold_start() for _ in range(args.cold_starts)]
    finally:
        stack.close()
    results["finished"] = datetime.now(UTC).isoformat()
    results["summary"] = report.summarise(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = started.strftime("%Y%m%dT%H%M%SZ") + (f"-{args.name}" if args.name else "")
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    log.info("results: %s", out.relative_to(REPO))
    if not args.no_docs:
        report.write_docs(results, out)
    print(report.text_summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
