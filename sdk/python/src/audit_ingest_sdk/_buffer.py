"""A batcher's options, counters, and its bounded queue of prepared events.

The queue knows nothing of threads or asyncio: the sync batcher guards it with a lock, the
async one uses it from its event loop only.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from audit_ingest_sdk._errors import QueueFullError
from audit_ingest_sdk._failures import ErrorCallback, FailedEvent, report_failures
from audit_ingest_sdk._prepare import MAX_BATCH_EVENTS, PreparedEvent
from audit_ingest_sdk._wire import MAX_BATCH_BYTES, batch_body_size

DEFAULT_MAX_BATCH_EVENTS = 100
DEFAULT_MAX_BATCH_BYTES = 4 * 1024 * 1024
DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_MAX_QUEUE_SIZE = 10_000
DEFAULT_BLOCK_TIMEOUT = 30.0

Overflow = Literal["block", "raise", "drop"]


@dataclass(frozen=True)
class BatcherOptions:
    """When a batcher sends, and what it does when its queue is full.

    A batch is sent when `max_batch_events` (1-1000) are queued, when the queued events would
    make a body of `max_batch_bytes` (up to the server's 5 MiB), or when the oldest queued
    event has waited `flush_interval` seconds. At most `max_queue_size` events wait; for one
    more, `enqueue` waits up to `block_timeout` seconds for room, then raises `QueueFullError`
    (`overflow="block"`, the sync batcher's default), raises at once (`"raise"`, the async
    batcher's default: its `enqueue` cannot wait inside the event loop), or drops and counts
    it (`"drop"`, only when asked). `on_error` receives the events that could not be delivered.
    """

    max_batch_events: int = DEFAULT_MAX_BATCH_EVENTS
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    overflow: Overflow = "block"
    on_error: ErrorCallback = None
    block_timeout: float = DEFAULT_BLOCK_TIMEOUT

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch_events <= MAX_BATCH_EVENTS:
            raise ValueError(f"max_batch_events must be 1 to {MAX_BATCH_EVENTS}")
        if not 1024 <= self.max_batch_bytes <= MAX_BATCH_BYTES:
            raise ValueError(f"max_batch_bytes must be 1024 to {MAX_BATCH_BYTES}")
        if self.flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        if self.max_queue_size < 1:
            raise ValueError("max_queue_size must be at least 1")
        if self.overflow not in ("block", "raise", "drop"):
            raise ValueError('overflow must be "block", "raise" or "drop"')
        if self.block_timeout < 0:
            raise ValueError("block_timeout must be 0 or more")

    def check_size(self, event: PreparedEvent) -> None:
        """Refuse an event that could never fit in a batch body."""
        size = batch_body_size(1, len(event.body))
        if size > self.max_batch_bytes:
            raise ValueError(
                f"the event is {len(event.body)} bytes: over max_batch_bytes "
                f"({self.max_batch_bytes}) on its own"
            )

    def report(self, failures: list[FailedEvent]) -> None:
        """Hand failures to `on_error` (or log them); a failing callback is logged, not raised."""
        report_failures(self.on_error, failures)


@dataclass(frozen=True)
class BatcherStats:
    """A snapshot of a batcher's counters (events unless said otherwise).

    `enqueued` were taken in; `accepted` are stored; `rejected` were handed to `on_error`;
    `dropped` were refused by a full queue; `queued` wait to be sent. `batches` counts the
    batches taken from the queue and sent (their retries and 413 halves are not counted).
    """

    enqueued: int
    accepted: int
    rejected: int
    dropped: int
    queued: int
    batches: int


class EventBuffer:
    """A FIFO of prepared events bounded in count, keeping its byte total and arrival times."""

    def __init__(self, max_size: int, overflow: Overflow) -> None:
        self._items: deque[tuple[PreparedEvent, float]] = deque()
        self._max_size = max_size
        self._overflow = overflow
        self._bytes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        """True when one more event would overflow."""
        return len(self._items) >= self._max_size

    @property
    def oldest(self) -> float | None:
        """When the oldest queued event arrived (the clock the caller passed), or None."""
        return self._items[0][1] if self._items else None

    def push(self, event: PreparedEvent, now: float) -> bool:
        """Queue an event; when full, drop it (False, `"drop"`) or raise `QueueFullError`.

        (`"block"`: the caller has waited for room already, in vain.)
        """
        if self.full:
            if self._overflow != "drop":
                raise QueueFullError(f"the batcher's queue is full ({self._max_size} events)")
            self.dropped += 1
            return False
        self._items.append((event, now))
        self._bytes += len(event.body)
        return True

    def ready(self, max_events: int, max_bytes: int) -> bool:
        """Whether a full batch is waiting (by count, or by body size)."""
        count = len(self._items)
        return count >= max_events or batch_body_size(count, self._bytes) >= max_bytes

    def take(self, max_events: int, max_bytes: int) -> list[PreparedEvent]:
        """The oldest events that fit one batch (at least one when not empty)."""
        batch: list[PreparedEvent] = []
        size = 0
        while self._items and len(batch) < max_events:
            event = self._items[0][0]
            grown = size + len(event.body)
            if batch and batch_body_size(len(batch) + 1, grown) > max_bytes:
                break
            self._items.popleft()
            self._bytes -= len(event.body)
            batch.append(event)
            size = grown
        return batch
