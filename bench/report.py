"""From a results file to numbers that matter: medians, spreads, ratios, targets, a plot.

`summarise` reduces the repetitions (median, min, max of each figure); `write_docs` rewrites
the generated part of docs/benchmarks.md (between its markers; the rest of the page is prose
kept by hand) and draws docs/benchmarks-latency.png.

    uv run python -m bench.report bench/results/<file>.json   # re-render docs from a file
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
PLOT = REPO / "docs" / "benchmarks-latency.png"
START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"
KNEE_P99_MS = 100.0
STACKS = {
    "own": "the bench's own LocalStack in .dev/bench",
    "running": "`make run`'s stack (.dev/stack.env)",
}

Agg = dict[str, float | int | None]


def agg(values: list[float | None]) -> Agg:
    found = [v for v in values if v is not None]
    if not found:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": round(statistics.median(found), 3),
        "min": round(min(found), 3),
        "max": round(max(found), 3),
        "n": len(found),
    }


def knee(points: list[dict[str, Any]]) -> tuple[float | None, bool]:
    """(highest offered rate passing the knee rule with every lower rate passing, capped).

    `capped` is True when no point failed: the knee is at least the highest rate tried.
    """
    best = None
    for point in sorted(points, key=lambda p: p["rate_offered"]):
        ok = point["error_total"] == 0 and point["latency_ms"]["p99"] <= KNEE_P99_MS
        if not ok:
            return best, False
        best = point["rate_offered"]
    return best, True


def at_rate(points: list[dict[str, Any]], rate: float) -> dict[str, Any] | None:
    for point in points:
        if abs(point["rate_offered"] - rate) < 1e-6:
            return point
    return None


def _p(points: list[dict[str, Any]], rate: float, pct: str = "p99") -> float | None:
    point = at_rate(points, rate)
    if point is None:
        return None
    if point["error_total"]:
        return float("inf")
    return float(point["latency_ms"][pct])


def _get(d: dict[str, Any] | None, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def each_rep(reps: list[dict[str, Any]], fn: Any) -> list[Any]:
    """`fn(rep)` for each repetition; None where the repetition lacks what it reads."""
    out = []
    for rep in reps:
        try:
            out.append(fn(rep))
        except (KeyError, TypeError, ZeroDivisionError):
            out.append(None)
    return out


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    reps = results.get("reps", [])
    s: dict[str, Any] = {}

    def each(fn: Any) -> list[Any]:
        return each_rep(reps, fn)

    s["b0f_max_rps"] = agg(each(lambda r: r["b0f"]["rate_achieved"]))
    s["b0f_p99_ms"] = agg(each(lambda r: r["b0f"]["latency_ms"]["p99"]))
    s["b0f_function_util"] = agg(each(lambda r: r["b0f"]["cpu"]["function_util"]))
    s["b0f_generator_util"] = agg(each(lambda r: r["b0f"]["generator_util"]))
    s["b0f_cpu_us_per_request"] = agg(each(lambda r: r["b0f"]["cpu_us_per_event"]["function"]))
    s["single_closed_function_util"] = agg(
        each(lambda r: r["single"]["closed"]["cpu"]["function_util"])
    )
    s["b1_events_per_s"] = agg(each(lambda r: r["b1"]["events_per_s"]))
    s["b1_awaited_p50_ms"] = agg(each(lambda r: r["b1"]["awaited_ms"]["p50"]))
    s["b1_awaited_p99_ms"] = agg(each(lambda r: r["b1"]["awaited_ms"]["p99"]))
    s["b1_flush100_p99_ms"] = agg(each(lambda r: r["b1"]["flush100_ms"]["p99"]))
    for name in ("single", "batch100", "batch1000"):
        size = 1 if name == "single" else int(name[5:])
        s[f"{name}_closed_rps"] = agg(each(lambda r, n=name: r[n]["closed"]["rate_achieved"]))
        s[f"{name}_closed_events_per_s"] = agg(
            each(lambda r, n=name: r[n]["closed"]["events_per_s"])
        )
        s[f"{name}_closed_p99_ms"] = agg(
            each(lambda r, n=name: r[n]["closed"]["latency_ms"]["p99"])
        )
        knees = each(lambda r, n=name: knee(r[n]["open"]))
        s[f"{name}_knee_rps"] = agg([k[0] if k else None for k in knees])
        s[f"{name}_knee_capped"] = any(k[1] for k in knees if k)
        s[f"{name}_knee_events_per_s"] = agg(
            [k[0] * size if k and k[0] is not None else None for k in knees]
        )
        for who in ("function", "kafka", "redis"):
            s[f"{name}_cpu_us_per_event_{who}"] = agg(
                each(lambda r, n=name, w=who: r[n]["closed"]["cpu_us_per_event"][w])
            )
    for rate in (500.0, 1000.0):
        for pct in ("p50", "p99"):
            s[f"single_{pct}_at_{rate:g}_ms"] = agg(
                each(lambda r, x=rate, p=pct: _p(r["single"]["open"], x, p))
            )
    for pct in ("p50", "p99"):
        s[f"batch100_{pct}_at_20_ms"] = agg(
            each(lambda r, p=pct: _p(r["batch100"]["open"], 20.0, p))
        )

    # Ratios, per repetition, then reduced.
    s["R_http"] = agg(
        each(lambda r: (knee(r["single"]["open"])[0] or 0) / r["b0f"]["rate_achieved"])
    )
    for name, size in (("batch100", 100), ("batch1000", 1000)):
        s[f"R_kafka_{name}"] = agg(
            each(
                lambda r, n=name, z=size: (knee(r[n]["open"])[0] or 0) * z / r["b1"]["events_per_s"]
            )
        )
    s["delta_L_ms"] = agg(
        each(lambda r: _p(r["single"]["open"], 500.0) - r["b1"]["awaited_ms"]["p99"])
    )
    per_event = s["single_cpu_us_per_event_function"]["median"]
    infra = sum((s[f"single_cpu_us_per_event_{w}"]["median"] or 0) for w in ("kafka", "redis"))
    s["cores_for_5000_single_rps"] = {
        "function": round(per_event * 5000 / 1e6, 3) if per_event else None,
        "function_kafka_redis": round((per_event + infra) * 5000 / 1e6, 3) if per_event else None,
    }
    cold = [c["exec_to_first_202_s"] for c in results.get("coldstart", [])]
    s["coldstart_s"] = agg(cold)
    s["coldstart_first_request_ms"] = agg(
        [c.get("first_request_ms") for c in results.get("coldstart", [])]
    )
    if any("workers_compare" in r for r in reps):
        s["workers_compare"] = {
            "workers": reps[0].get("workers_compare", {}).get("workers"),
            "b0f_max_rps": agg(each(lambda r: r["workers_compare"]["b0f"]["rate_achieved"])),
            "single_closed_rps": agg(
                each(lambda r: r["workers_compare"]["single"]["closed"]["rate_achieved"])
            ),
            "single_p99_at_1000_ms": agg(
                each(lambda r: _p(r["workers_compare"]["single"]["open"], 1000.0))
            ),
            "single_p99_at_500_ms": agg(
                each(lambda r: _p(r["workers_compare"]["single"]["open"], 500.0))
            ),
            "single_cpu_us_per_event": agg(
                each(
                    lambda r: r["workers_compare"]["single"]["closed"]["cpu_us_per_event"][
                        "function"
                    ]
                )
            ),
        }
    foreign = [
        point["cpu"]["foreign_cores"]
        for rep in reps
        for name in ("single", "batch100", "batch1000")
        for point in [rep.get(name, {}).get("closed"), *rep.get(name, {}).get("open", [])]
        if point and "foreign_cores" in point.get("cpu", {})
    ]
    s["foreign_cores"] = {
        "median": round(statistics.median(foreign), 3) if foreign else None,
        "max": max(foreign) if foreign else None,
        "points_over_0.2": sum(f > 0.2 for f in foreign),
        "points": len(foreign),
    }
    s.update(summarise_paths(reps))
    s["retried_points"] = sum(
        "first_attempt" in point
        for rep in reps
        for name in ("single", "batch100", "batch1000")
        for point in rep.get(name, {}).get("open", [])
    )
    s["targets"] = targets(s)
    finite: dict[str, Any] = _finite(s)
    return finite


def _plain_of(name: str) -> str:
    """The plain-JSON scenario a hidden-cost path is compared with ("batch100-gzip" -> ...)."""
    return name.split("-", 1)[0]


def _cpu(point: dict[str, Any] | None) -> float:
    """A point's function CPU µs per event (KeyError when there is no such point)."""
    if point is None:
        raise KeyError("no point at that rate")
    return float(point["cpu_us_per_event"]["function"])


def _plain_at(rep: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The plain body's open point at the rate the path `name` was offered, same repetition."""
    rate = rep["paths"][name]["rate_offered"]
    plain = "single" if name.startswith("gateway-") else _plain_of(name)
    return at_rate(rep[plain]["open"], rate)


def summarise_paths(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """The hidden-cost paths and gateway mode, each against the plain body at the same offered
    rate; and the broker's CPU per single event at 1,000 req/s."""
    s: dict[str, Any] = {}

    def each(fn: Any) -> list[Any]:
        return each_rep(reps, fn)

    names = sorted(
        {n for rep in reps for n in rep.get("paths", {}) if not n.startswith("gateway-")}
    )
    s["paths"] = {
        name: {
            "plain": _plain_of(name),
            "rate": agg(each(lambda r, n=name: r["paths"][n]["rate_offered"])),
            "p99_ms": agg(
                each(lambda r, n=name: _p([r["paths"][n]], r["paths"][n]["rate_offered"]))
            ),
            "plain_p99_ms": agg(
                each(lambda r, n=name: _p(r[_plain_of(n)]["open"], r["paths"][n]["rate_offered"]))
            ),
            **{
                who: agg(each(lambda r, n=name, w=who: r["paths"][n]["cpu_us_per_event"][w]))
                for who in ("function", "kafka", "redis")
            },
            "vs_plain": agg(each(lambda r, n=name: _cpu(r["paths"][n]) / _cpu(_plain_at(r, n)))),
        }
        for name in names
    }

    def call(rep: dict[str, Any], name: str) -> float:
        return _cpu(rep["paths"][name])

    s["gateway_authorize_cpu_us"] = agg(each(lambda r: call(r, "gateway-authorize")))
    s["gateway_ingest_cpu_us"] = agg(each(lambda r: call(r, "gateway-ingest")))
    s["gateway_pair_cpu_us"] = agg(
        each(lambda r: call(r, "gateway-authorize") + call(r, "gateway-ingest"))
    )
    s["gateway_inline_cpu_us"] = agg(each(lambda r: _cpu(_plain_at(r, "gateway-ingest"))))
    s["gateway_pair_vs_inline"] = agg(
        each(
            lambda r: (
                (call(r, "gateway-authorize") + call(r, "gateway-ingest"))
                / _cpu(_plain_at(r, "gateway-ingest"))
            )
        )
    )
    s["single_kafka_cpu_us_at_1000"] = agg(
        each(lambda r: _get(at_rate(r["single"]["open"], 1000.0), "cpu_us_per_event", "kafka"))
    )
    return s


def _finite(value: Any) -> Any:
    """JSON has no Infinity: a p99 of a point with errors is written as "errors"."""
    if isinstance(value, float) and value == float("inf"):
        return "errors"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _m(s: dict[str, Any], key: str) -> float | None:
    value = s.get(key, {})
    return value.get("median") if isinstance(value, dict) else None


def targets(s: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [
        ("single p99 at 1,000 req/s", "<= 20 ms", _m(s, "single_p99_at_1000_ms"), 20.0, "le"),
        ("R_http", ">= 0.5", _m(s, "R_http"), 0.5, "ge"),
        ("batch of 100: p99 at 20 req/s", "<= 50 ms", _m(s, "batch100_p99_at_20_ms"), 50.0, "le"),
        ("R_kafka (batch of 100)", ">= 0.25", _m(s, "R_kafka_batch100"), 0.25, "ge"),
        ("Delta-L", "<= 5 ms", _m(s, "delta_L_ms"), 5.0, "le"),
        (
            "cores for 5,000 single req/s (function; computed from CPU per event, not run)",
            "<= 2",
            s["cores_for_5000_single_rps"]["function"],
            2.0,
            "le",
        ),
        ("cold start (exec -> first 202)", "<= 1.0 s", _m(s, "coldstart_s"), 1.0, "le"),
        # Issue 12's (the compiled per-event path), besides the rows above it keeps.
        (
            "issue 12: single-event function CPU per request",
            "<= 100 µs",
            _m(s, "single_cpu_us_per_event_function"),
            100.0,
            "le",
        ),
        ("issue 12: R_http", ">= 0.30", _m(s, "R_http"), 0.30, "ge"),
        (
            "issue 12: batch-of-100 function CPU per event",
            "<= 14 µs",
            _m(s, "batch100_cpu_us_per_event_function"),
            14.0,
            "le",
        ),
        (
            "issue 12: broker CPU per single event at 1,000 req/s",
            "<= 6 µs",
            _m(s, "single_kafka_cpu_us_at_1000"),
            6.0,
            "le",
        ),
        (
            "issue 12: gateway mode, authorize + ingest CPU / inline's",
            "<= 1.0",
            _m(s, "gateway_pair_vs_inline"),
            1.0,
            "le",
        ),
    ]
    out = []
    for name, goal, value, bound, how in rows:
        met = None if value is None else (value <= bound if how == "le" else value >= bound)
        out.append({"target": name, "goal": goal, "value": value, "met": met})
    return out


# -- text ------------------------------------------------------------------------------------
def fmt(value: float | str | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str) or value == float("inf"):
        return "errors"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def cell(a: Agg | None, digits: int = 1) -> str:
    if not a or a.get("median") is None:
        return "n/a"
    med, lo, hi = a["median"], a["min"], a["max"]
    if a["n"] == 1 or lo == hi:
        return fmt(med, digits)
    return f"{fmt(med, digits)} [{fmt(lo, digits)}-{fmt(hi, digits)}]"


def table_rows(s: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, value, note) rows of the main table."""
    rows = [
        ("B0f framework floor: max rate (req/s)", cell(s["b0f_max_rps"], 0), "closed loop"),
        (
            "B0f: CPU µs per request; cores busy: function / generator",
            f"{cell(s['b0f_cpu_us_per_request'], 0)}; {cell(s['b0f_function_util'], 2)} / "
            f"{cell(s['b0f_generator_util'], 2)}",
            "a generator near 1.0 would set B0f's pace",
        ),
        ("B1 Kafka floor: events/s flat out", cell(s["b1_events_per_s"], 0), ""),
        ("B1: one awaited record, p50 (ms)", cell(s["b1_awaited_p50_ms"], 2), ""),
        ("B1: one awaited record, p99 (ms)", cell(s["b1_awaited_p99_ms"], 2), ""),
        ("B1: 100-record flush, p99 (ms)", cell(s["b1_flush100_p99_ms"], 2), ""),
        ("S single: max rate (req/s)", cell(s["single_closed_rps"], 0), "closed loop"),
        (
            "S single: knee (req/s)",
            cell(s["single_knee_rps"], 0)
            + (" (no point failed)" if s["single_knee_capped"] else ""),
            "open loop, p99 <= 100 ms, no errors",
        ),
        (
            "S single: p50 / p99 at 500 req/s (ms)",
            f"{cell(s['single_p50_at_500_ms'], 2)} / {cell(s['single_p99_at_500_ms'], 2)}",
            "open loop",
        ),
        (
            "S single: p50 / p99 at 1,000 req/s (ms)",
            f"{cell(s['single_p50_at_1000_ms'], 2)} / {cell(s['single_p99_at_1000_ms'], 2)}",
            "open loop",
        ),
        (
            "S batch of 100: max (req/s; events/s)",
            f"{cell(s['batch100_closed_rps'], 1)}; {cell(s['batch100_closed_events_per_s'], 0)}",
            "closed loop",
        ),
        (
            "S batch of 100: knee (req/s; events/s)",
            f"{cell(s['batch100_knee_rps'], 1)}; {cell(s['batch100_knee_events_per_s'], 0)}",
            "open loop",
        ),
        (
            "S batch of 100: p50 / p99 at 20 req/s (ms)",
            f"{cell(s['batch100_p50_at_20_ms'], 2)} / {cell(s['batch100_p99_at_20_ms'], 2)}",
            "open loop",
        ),
        (
            "S batch of 1000: max (req/s; events/s)",
            f"{cell(s['batch1000_closed_rps'], 2)}; {cell(s['batch1000_closed_events_per_s'], 0)}",
            "closed loop",
        ),
        (
            "S batch of 1000: knee (req/s; events/s)",
            f"{cell(s['batch1000_knee_rps'], 2)}; {cell(s['batch1000_knee_events_per_s'], 0)}",
            "open loop",
        ),
    ]
    for name, label in (
        ("single", "single"),
        ("batch100", "batch of 100"),
        ("batch1000", "batch of 1000"),
    ):
        rows.append(
            (
                f"CPU µs per event, {label}: function / broker / Redis",
                " / ".join(
                    cell(s[f"{name}_cpu_us_per_event_{w}"], 0)
                    for w in ("function", "kafka", "redis")
                ),
                "closed loop, /proc utime+stime",
            )
        )
    cores = s["cores_for_5000_single_rps"]
    rows.append(
        (
            "cores for 5,000 single req/s: function (+ broker + Redis)",
            f"{fmt(cores['function'], 2)} ({fmt(cores['function_kafka_redis'], 2)})",
            "from CPU µs per event",
        )
    )
    rows.append(("cold start: exec -> first 202 (s)", cell(s["coldstart_s"], 3), ""))
    rows.append(
        (
            "cold start: the first request itself (ms)",
            cell(s["coldstart_first_request_ms"], 0),
            "builds the app",
        )
    )
    return rows


_PATH_LABELS = {
    "gzip": "gzip-compressed",
    "ce-binary": "binary-mode CloudEvent",
    "ce-structured": "structured CloudEvents",
    "keyed": "idempotency key on every event",
}


def path_rows(s: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(path, offered rate, function CPU µs per event, times the plain body's, p99 ms: the
    path's / the plain body's) rows."""
    rows = []
    for name, p in (s.get("paths") or {}).items():
        plain = p["plain"]
        what = _PATH_LABELS.get(name[len(plain) + 1 :], name)
        body = "single event" if plain == "single" else f"batch of {plain[5:]}"
        rows.append(
            (
                f"{body}, {what}",
                f"{fmt(p['rate']['median'], 0)} req/s",
                cell(p["function"], 0),
                cell(p["vs_plain"], 2),
                f"{cell(p['p99_ms'], 1)} / {cell(p['plain_p99_ms'], 1)}",
            )
        )
    if _m(s, "gateway_pair_cpu_us") is not None:
        rows.append(
            (
                "gateway mode: `authorize` (forward-auth's GET) + `ingest-event`",
                "1,000 req/s",
                f"{cell(s['gateway_authorize_cpu_us'], 0)} + {cell(s['gateway_ingest_cpu_us'], 0)}"
                f" = {cell(s['gateway_pair_cpu_us'], 0)}",
                cell(s["gateway_pair_vs_inline"], 2),
                "",
            )
        )
    return rows


def ratio_rows(s: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        ("R_http = single knee / B0f max", cell(s["R_http"], 3), ">= 0.5"),
        (
            "R_kafka = batch-of-100 knee events/s / B1 events/s",
            cell(s["R_kafka_batch100"], 3),
            ">= 0.25",
        ),
        ("R_kafka (batch of 1000)", cell(s["R_kafka_batch1000"], 3), "(>= 0.25)"),
        (
            "Delta-L = single p99 at 500 req/s - B1 awaited p99 (ms)",
            cell(s["delta_L_ms"], 2),
            "<= 5 ms",
        ),
    ]


def text_summary(results: dict[str, Any]) -> str:
    s = results["summary"]
    lines = ["", "make bench: medians [min-max]"]
    for what, value, _ in table_rows(s) + ratio_rows(s):
        lines.append(f"  {what:<64} {value}")
    for what, rate, cpu, times, p99 in path_rows(s):
        lines.append(f"  {what:<64} {cpu} µs/event at {rate} ({times} times plain; p99 {p99})")
    lines.append("targets:")
    for row in s["targets"]:
        mark = {True: "met", False: "NOT met", None: "n/a"}[row["met"]]
        lines.append(f"  {row['target']:<44} {row['goal']:<10} {fmt(row['value'], 3):>10}  {mark}")
    return "\n".join(lines)


def markdown(results: dict[str, Any], results_file: Path) -> str:
    s = results["summary"]
    settings = results["settings"]
    machine = results["machine"]
    v = results["versions"]
    quiet = [rep["machine"] for rep in results["reps"]]
    rel = results_file.relative_to(REPO) if results_file.is_relative_to(REPO) else results_file
    lines = [
        START,
        "<!-- Generated by `python -m bench.run` (bench/report.py); edits here are lost. -->",
        "",
        f"## Latest results ({results['started'][:16].replace('T', ' ')} UTC)",
        "",
        f"Command: `make bench` (`{results['command']}`); results file `{rel}`. "
        f"{settings['reps']} repetition(s); every figure is the median, [min-max] across them. "
        f"{settings['duration_s']:g} s measured per point after {settings['warmup_s']:g} s of "
        "warm-up (longer at low rates, for at least ~300 requests).",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"Linux {machine['kernel']}, Python {machine['python']}{_interpreter(machine)}. "
        "Functions and B1 pinned to "
        f"{settings['pinning']['functions_and_b1']}, the generator to "
        f"{settings['pinning']['generator']}; Kafka, Redis and PostgreSQL: "
        f"{settings['pinning']['kafka_redis_postgres']}. WORKERS={settings['workers']}.",
        "",
        "Machine state before each repetition (1/5/15-min load; cores busy over 5 s, the bench's "
        "idle stack included): "
        + "; ".join(
            f"rep {i + 1}: load {q.get('load_at_start')} (waited {q.get('waited_s', 0):g} s), "
            f"{q.get('busy_cores_5s')} cores busy"
            for i, q in enumerate(quiet)
        )
        + ". "
        + foreign_text(s),
        "",
        f"Stack: {STACKS.get(settings['stack'], settings['stack'])}: "
        f"Kafka {v.get('kafka (broker)')} (KRaft, one node, replication 1, min.insync 1, no "
        "fsync per write: the page cache; Redpanda fsyncs and replicates, so its acks=all latency "
        "is "
        f"higher), Redis {v.get('redis-server')}, PostgreSQL (keys only; cached).",
        "",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        f"Load generator: bench/loadgen (Go, {results['loadgen_build']['go']}); "
        + (
            f"built in {results['loadgen_build']['seconds']:.1f} s this run."
            if results["loadgen_build"]["seconds"] is not None
            else "reused from .dev/bin (built on an earlier run)."
        ),
        "",
        "| measurement | value | how |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in table_rows(s)]
    paths = path_rows(s)
    if paths:
        lines += [
            "",
            "The costs a plain JSON body hides, and gateway mode: each offered open loop at the "
            "rate the plain body's targets name, against the plain body at that rate in the same "
            "repetition ('times plain': function CPU per event; gateway mode: both calls APISIX "
            "makes for one event, each measured alone, against inline mode's single event):",
            "",
            "| path | offered | function CPU µs per event | times plain | p99 ms: path / plain |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in paths]
    lines += ["", "| ratio | value | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in ratio_rows(s)]
    lines += ["", "| target | goal | value | met |", "|---|---|---|---|"]
    for row in s["targets"]:
        mark = {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
        lines.append(f"| {row['target']} | {row['goal']} | {fmt(row['value'], 3)} | {mark} |")
    wc = s.get("workers_compare")
    if wc:
        lines += [
            "",
            f"WORKERS={wc['workers']} (same pinning, both workers on one core): "
            f"B0f max {cell(wc['b0f_max_rps'], 0)} req/s; "
            f"single max {cell(wc['single_closed_rps'], 0)} req/s, p99 at 500 req/s "
            f"{cell(wc['single_p99_at_500_ms'], 2)} ms, at 1,000 req/s "
            f"{cell(wc['single_p99_at_1000_ms'], 2)} ms, {cell(wc['single_cpu_us_per_event'], 0)} "
            "CPU µs per event.",
        ]
    lines += [
        "",
        "![latency percentiles against offered rate](benchmarks-latency.png)",
        "",
        END,
    ]
    return "\n".join(lines)


def foreign_text(s: dict[str, Any]) -> str:
    f = s.get("foreign_cores") or {}
    if not f.get("points"):
        return ""
    return (
        f"During the measured points, other processes used {f['median']:.2f} cores (median; "
        f"max {f['max']:.2f}; {f['points_over_0.2']} of {f['points']} points above 0.2); "
        f"{s.get('retried_points', 0)} open-loop point(s) failed the knee rule once and were "
        "measured again (both attempts are in the results file)."
    )


def _interpreter(machine: dict[str, Any]) -> str:
    """How the services' interpreter was chosen (bench/interpreter.py); runs before round nine
    recorded none: they ran on the project's own."""
    service = machine.get("service_python")
    if not service:
        return " (the project's interpreter)"
    return f" ({service['choice']})"


def write_docs(results: dict[str, Any], results_file: Path) -> None:
    block = markdown(results, results_file)
    if DOC.exists():
        text = DOC.read_text()
        if START in text and END in text:
            head, rest = text.split(START, 1)
            tail = rest.split(END, 1)[1]
            text = head + block + tail
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
    else:
        text = "# Benchmarks\n\n" + block + "\n"
    DOC.write_text(text)
    plot(results, PLOT)


# -- plot ------------------------------------------------------------------------------------
def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["summary"]
    panels = [
        ("single", "single event (req/s)", 20.0, 1000.0),
        ("batch100", "batch of 100 (req/s)", 50.0, 20.0),
        ("batch1000", "batch of 1000 (req/s)", None, None),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    for ax, (name, xlabel, target_ms, target_rate) in zip(axes, panels, strict=True):
        by_rate: dict[float, list[dict[str, Any]]] = {}
        for rep in results["reps"]:
            for point in rep.get(name, {}).get("open", []):
                by_rate.setdefault(point["rate_offered"], []).append(point)
        rates = sorted(by_rate)
        if not rates:
            ax.set_visible(False)
            continue
        for pct, style in (("p50", "o-"), ("p90", "s-"), ("p99", "^-"), ("p999", "v--")):
            ys = [statistics.median(p["latency_ms"][pct] for p in by_rate[r]) for r in rates]
            line = ax.plot(rates, ys, style, label=pct.replace("p999", "p99.9"), markersize=4)
            if pct == "p99":
                lo = [min(p["latency_ms"][pct] for p in by_rate[r]) for r in rates]
                hi = [max(p["latency_ms"][pct] for p in by_rate[r]) for r in rates]
                ax.fill_between(rates, lo, hi, color=line[0].get_color(), alpha=0.15)
        bad = [r for r in rates if any(p["error_total"] for p in by_rate[r])]
        if bad:
            ax.plot(bad, [KNEE_P99_MS] * len(bad), "rx", markersize=9, label="errors")
        ax.axhline(KNEE_P99_MS, color="grey", linestyle=":", linewidth=1, label="knee rule 100 ms")
        knee_rate = s.get(f"{name}_knee_rps", {}).get("median")
        if knee_rate:
            ax.axvline(
                knee_rate, color="green", linestyle="--", linewidth=1, label=f"knee {knee_rate:g}"
            )
        if target_ms and target_rate:
            ax.plot(
                [target_rate],
                [target_ms],
                "k*",
                markersize=12,
                label=f"target ≤{target_ms:g} ms @ {target_rate:g}",
            )
        b0f = s["b0f_max_rps"]["median"]
        if name == "single" and b0f:
            if b0f <= 1.3 * rates[-1]:
                ax.axvline(b0f, color="purple", linestyle="-.", linewidth=1, label="B0f max")
            else:
                ax.plot([], [], " ", label=f"B0f max {b0f:,.0f} req/s (off scale)")
        ax.set_yscale("log")
        ax.set_xlabel(f"offered rate, {xlabel}")
        ax.set_ylabel("latency (ms, from intended send time)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        "audit-ingest, open loop (coordinated-omission corrected): median of "
        f"{len(results['reps'])} repetition(s), p99 band = min-max"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    path = Path(sys.argv[1])
    results = json.loads(path.read_text())
    results["summary"] = summarise(results)
    write_docs(results, path.resolve())
    print(text_summary(results))


if __name__ == "__main__":
    main()
