"""Request limits, as plain data the pure core can check against."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may carry. Defaults are documented in the README's settings table."""

    max_event_bytes: int = 65_536
    max_batch_body_bytes: int = 5 * 1024 * 1024
    max_batch_events: int = 1000
    max_depth: int = 16
    max_string_length: int = 8192
    max_future_skew_seconds: int = 300
