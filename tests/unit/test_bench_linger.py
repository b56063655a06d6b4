"""The linger study's summary: medians per value over the rounds, errors summed, never mixed."""

from __future__ import annotations

from typing import Any

from bench import linger


def _point(linger_ms: int, broker_us: float, p99_ms: float, errors: int = 0) -> dict[str, Any]:
    point: dict[str, Any] = {name: 1.0 for name in linger.FIGURES}
    point.update(linger_ms=linger_ms, broker_us=broker_us, p99_ms=p99_ms, errors=errors)
    return point


def test_each_value_gets_the_median_of_its_own_rounds() -> None:
    points = [
        _point(2, 150.0, 10.0),
        _point(5, 80.0, 12.0, errors=1),
        _point(2, 140.0, 30.0),
        _point(5, 90.0, 11.0),
        _point(2, 900.0, 9.0),  # one disturbed round does not move the median
        _point(5, 85.0, 13.0, errors=2),
    ]
    summary = linger.summarise(points)
    assert list(summary) == [2, 5]
    assert summary[2]["broker_us"] == 150.0 and summary[2]["p99_ms"] == 10.0
    assert summary[5]["broker_us"] == 85.0 and summary[5]["p99_ms"] == 12.0
    assert summary[2]["errors"] == 0 and summary[5]["errors"] == 3
    assert summary[2]["rounds"] == summary[5]["rounds"] == 3


def test_the_table_has_one_row_per_value() -> None:
    summary = linger.summarise([_point(0, 300.0, 25.0), _point(10, 60.0, 16.5)])
    rows = linger.table(summary).splitlines()
    assert len(rows) == 4
    assert rows[2].startswith("| 0 | 300.0 ") and "| 25.00 |" in rows[2]
    assert rows[3].startswith("| 10 | 60.0 ") and "| 16.50 |" in rows[3]
