"""Durations as operators type them (`90s`, `15m`, `24h`, `7d`, `1h30m`): key rotation's grace
period and the DLQ commands' `--since`."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
MAX_GRACE = timedelta(days=365)


def parse_duration(text: str) -> timedelta:
    """`86400`, `90s`, `15m`, `24h`, `7d` or combinations such as `1h30m`; at most a year.

    :raises ValueError: for anything else.
    """
    value = text.strip().lower()
    if value.isdigit():
        seconds = int(value)
    else:
        parts = _DURATION.findall(value)
        if not parts or "".join(number + unit for number, unit in parts) != value:
            raise ValueError(f"{text!r} is not a duration such as 24h, 30m, 90s or 3600")
        seconds = sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    duration = timedelta(seconds=seconds)
    if duration > MAX_GRACE:
        raise ValueError(f"{text!r} is longer than {MAX_GRACE.days} days")
    return duration
