"""Event ids at the scale of load: strictly increasing, and never stamped ahead of the clock."""

from __future__ import annotations

import time
import uuid

from audit_ingest.ids import new_event_id

IDS = 1_000_000
CHUNK = 1_000


def _millis(event_id: str) -> int:
    return uuid.UUID(event_id).int >> 80


def test_a_million_ids_increase_strictly_and_never_run_ahead_of_the_clock() -> None:
    # As fast as one process can draw them (about 1,000 per millisecond here, many more than
    # one per millisecond: the case where uuid6 moved the embedded time forward). The clock is
    # read after each chunk: every id drawn before that reading must carry a time at most
    # 1 ms past it (the clock's own granularity).
    previous = 0
    worst_lead_ms = -(10**9)
    for _ in range(IDS // CHUNK):
        chunk = [new_event_id() for _ in range(CHUNK)]
        now_ms = time.time_ns() // 1_000_000
        for event_id in chunk:
            value = uuid.UUID(event_id).int
            assert value > previous, f"{event_id} is not after the id before it"
            previous = value
        worst_lead_ms = max(worst_lead_ms, max(_millis(e) for e in chunk) - now_ms)
    assert worst_lead_ms <= 1, f"an id carried a time {worst_lead_ms} ms ahead of the clock"


def test_ids_are_rfc_9562_version_7() -> None:
    before = time.time_ns() // 1_000_000
    parsed = uuid.UUID(new_event_id())
    after = time.time_ns() // 1_000_000
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert before <= parsed.int >> 80 <= after
    assert str(parsed) == str(parsed).lower()
