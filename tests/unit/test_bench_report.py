"""The bench report's figures for the hidden-cost paths and gateway mode (issue 12): each path
is set against the plain body offered at the same rate in the same repetition."""

from __future__ import annotations

from typing import Any

from bench import report


def _point(cpu_us: float, rate: float, *, p99: float = 2.0, kafka: float = 5.0) -> dict[str, Any]:
    return {
        "rate_achieved": rate,
        "rate_offered": rate,
        "error_total": 0,
        "latency_ms": {"p50": 1.0, "p99": p99},
        "cpu_us_per_event": {"function": cpu_us, "kafka": kafka, "redis": 1.0},
    }


def _rep(single: float, batch: float, authorize: float, ingest: float) -> dict[str, Any]:
    return {
        # The closed loops cost less per event than the open points: a path must not be
        # compared with them.
        "single": {
            "closed": _point(single / 2, 5000.0),
            "open": [_point(single / 3, 500.0), _point(single, 1000.0, p99=8.0, kafka=9.0)],
        },
        "batch100": {"closed": _point(batch / 2, 250.0), "open": [_point(batch, 20.0)]},
        "paths": {
            "single-gzip": _point(single * 1.5, 1000.0, p99=12.0),
            "batch100-ce-structured": _point(batch * 2, 20.0),
            "gateway-authorize": _point(authorize, 1000.0),
            "gateway-ingest": _point(ingest, 1000.0),
        },
    }


def _summary(reps: list[dict[str, Any]]) -> dict[str, Any]:
    return report.summarise_paths(reps)


def test_paths_are_compared_with_the_plain_body_at_their_own_rate() -> None:
    s = _summary([_rep(200, 40, 80, 170), _rep(100, 20, 60, 90)])
    gzip, ce = s["paths"]["single-gzip"], s["paths"]["batch100-ce-structured"]
    assert gzip["vs_plain"]["median"] == 1.5
    assert ce["vs_plain"]["median"] == 2.0
    assert (gzip["p99_ms"]["median"], gzip["plain_p99_ms"]["median"]) == (12.0, 8.0)
    assert gzip["plain"] == "single" and gzip["rate"]["median"] == 1000.0
    assert "gateway-authorize" not in s["paths"]


def test_a_path_without_a_plain_point_at_its_rate_has_no_ratio() -> None:
    rep = _rep(200, 40, 80, 170)
    rep["single"]["open"] = [_point(70, 500.0)]  # the sweep did not reach 1,000 req/s
    s = _summary([rep])
    assert s["paths"]["single-gzip"]["vs_plain"]["median"] is None
    assert s["gateway_pair_vs_inline"]["median"] is None


def test_gateway_pair_is_both_calls_against_inline_single_at_the_same_rate() -> None:
    s = _summary([_rep(200, 40, 80, 170), _rep(100, 20, 60, 90)])
    # per repetition: (80 + 170) / 200 = 1.25, (60 + 90) / 100 = 1.5
    assert s["gateway_pair_vs_inline"] == {"median": 1.375, "min": 1.25, "max": 1.5, "n": 2}
    assert s["gateway_pair_cpu_us"]["median"] == 200.0
    assert s["gateway_inline_cpu_us"]["median"] == 150.0
    assert s["single_kafka_cpu_us_at_1000"]["median"] == 9.0


def test_issue_targets_read_the_summary() -> None:
    s = _summary([_rep(200, 40, 80, 170)])
    s.update(
        {
            "single_cpu_us_per_event_function": {"median": 90.0},
            "batch100_cpu_us_per_event_function": {"median": 15.0},
            "R_http": {"median": 0.31},
            "cores_for_5000_single_rps": {"function": None},
        }
    )
    met = {row["target"]: row["met"] for row in report.targets(s)}
    assert met["issue 12: single-event function CPU per request"] is True
    assert met["issue 12: batch-of-100 function CPU per event"] is False
    assert met["issue 12: R_http"] is True
    assert met["issue 12: broker CPU per single event at 1,000 req/s"] is False  # 9 > 6
    assert met["issue 12: gateway mode, authorize + ingest CPU / inline's"] is False  # 1.25


def test_rows_name_each_path_and_the_gateway_sum() -> None:
    rows = report.path_rows(_summary([_rep(200, 40, 80, 170)]))
    assert [row[0] for row in rows] == [
        "batch of 100, structured CloudEvents",
        "single event, gzip-compressed",
        "gateway mode: `authorize` (forward-auth's GET) + `ingest-event`",
    ]
    assert rows[1][1:] == ("1,000 req/s", "300", "1.50", "12.0 / 8.0")
    assert rows[-1][2] == "80 + 170 = 250" and rows[-1][3] == "1.25"


def test_a_paths_only_run_compares_with_the_plain_points_it_measured_itself() -> None:
    """`bench.run --only paths`: no S stage, so the paths stage stores the plain body's point
    at each PATH_RATES rate under `single` / `batch100` (`open` only, no closed loop). The
    whole summary must still compute, with the ratios and n/a for what was not run."""
    rep = _rep(200, 40, 80, 170)
    rep["single"] = {"open": [_point(200, 1000.0, p99=8.0)]}
    rep["batch100"] = {"open": [_point(40, 20.0)]}
    s = report.summarise({"reps": [{"machine": {}, **rep}]})
    assert s["paths"]["single-gzip"]["vs_plain"]["median"] == 1.5
    assert s["paths"]["batch100-ce-structured"]["vs_plain"]["median"] == 2.0
    assert s["gateway_pair_vs_inline"]["median"] == 1.25
    assert s["R_http"]["median"] is None
