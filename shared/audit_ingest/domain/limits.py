"""Request limits, as plain data the pure core can check against."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may carry. Defaults are documented in the README's settings table."""

    max_event_bytes: int = 65_536
    max_batch_body_bytes: int = 5 * 1024 * 1024
    max_batch_events: int = 1000
    max_depth: int = 16
    max_string_length: int = 8192
    max_future_skew_seconds: int = 300
    # `max_future_skew_seconds` as a timedelta, made once (every event's timestamp is held to it).
    future_skew: timedelta = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "future_skew", timedelta(seconds=self.max_future_skew_seconds))
