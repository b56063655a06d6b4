"""The durable spool shared by `SpoolingClient` and `AsyncSpoolingClient`: options, counters,
room, and when the next batch is due. The clients only add their way of sending and waiting.

Every method takes the one lock (a `threading.Condition`), so any number of threads may
spool while one sender takes batches: the sync client's thread, or the async client's task
through `asyncio.to_thread`. The file itself is `_spool_store.py`; what an answer means for
each event is `_spool_delivery.py`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from audit_ingest_sdk._buffer import DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_BATCH_BYTES
from audit_ingest_sdk._errors import QueueFullError
from audit_ingest_sdk._failures import ErrorCallback, FailedEvent, report_failures
from audit_ingest_sdk._prepare import MAX_BATCH_EVENTS, PreparedEvent
from audit_ingest_sdk._spool_delivery import Verdict, backoff
from audit_ingest_sdk._spool_store import (
    DeadLetter,
    Durability,
    Rejection,
    SpooledEvent,
    SpoolStore,
)
from audit_ingest_sdk._wire import MAX_BATCH_BYTES, batch_body_size

logger = logging.getLogger("audit_ingest_sdk")

DEFAULT_MAX_BYTES = 1024**3  # 1 GiB, the seed's disk buffer
DEFAULT_SPOOL_BATCH_EVENTS = 500
DEFAULT_BLOCK_TIMEOUT = 30.0
DEFAULT_HIGH_WATER = 0.8
DEFAULT_BACKOFF = 0.5
DEFAULT_MAX_BACKOFF = 30.0

# (`Optional`/`Union`, not `|`: these lines run on Python 3.9.)
PathLike = Union[str, "os.PathLike[str]"]
PressureCallback = Optional[Callable[["SpoolStats"], None]]  # noqa: UP045


@dataclass(frozen=True)
class SpoolStats:
    """A snapshot of a spool. Sizes are bytes of event JSON (the file is somewhat larger).

    `pending` events wait to be sent (`pending_bytes`); `dead_letters` were refused by the
    server for good and are kept aside (`dead_letter_bytes`); both count against `max_bytes`.
    Counters since this client opened the spool: `spooled` taken in, `accepted` stored by the
    server, `rejected` moved to the dead letters, `batches` sent, `failed_rounds` batches that
    kept events for a later round (`last_error` says why).
    """

    pending: int
    pending_bytes: int
    dead_letters: int
    dead_letter_bytes: int
    max_bytes: int
    spooled: int
    accepted: int
    rejected: int
    batches: int
    failed_rounds: int
    last_error: str | None

    @property
    def used_bytes(self) -> int:
        """Bytes counted against `max_bytes`: pending events and dead letters."""
        return self.pending_bytes + self.dead_letter_bytes

    @property
    def fill(self) -> float:
        """`used_bytes / max_bytes`, from 0 to 1."""
        return self.used_bytes / self.max_bytes


@dataclass(frozen=True)
class SpoolOptions:
    """How a spool stores, sends and pushes back; see the README's "The spool".

    `max_bytes` bounds the spool (event JSON, pending plus dead letters). `send` waits up to
    `block_timeout` seconds for room, then raises `QueueFullError` (0: raise at once).
    `on_pressure(stats)` is called when the spool fills past `high_water` (a fraction of
    `max_bytes`), again each time it crosses back up. A batch leaves at `max_batch_events`
    events, `max_batch_bytes` of body, or `flush_interval` seconds after its oldest event was
    spooled. A round that keeps events waits `Retry-After`, else a full-jitter backoff from
    `backoff` up to `max_backoff` seconds. `durability="full"` fsyncs every spooled event (it
    survives power loss); `"normal"` survives a crash of the process only, and is faster.
    `on_error` receives events moved to the dead letters.
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    block_timeout: float = DEFAULT_BLOCK_TIMEOUT
    high_water: float = DEFAULT_HIGH_WATER
    on_pressure: PressureCallback = None
    max_batch_events: int = DEFAULT_SPOOL_BATCH_EVENTS
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    backoff: float = DEFAULT_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    durability: Durability = "full"
    on_error: ErrorCallback = None

    def __post_init__(self) -> None:
        if self.max_bytes < 1024:
            raise ValueError("max_bytes must be at least 1024")
        if self.block_timeout < 0:
            raise ValueError("block_timeout must be 0 or more")
        if not 0 < self.high_water <= 1:
            raise ValueError("high_water must be a fraction in (0, 1]")
        if not 1 <= self.max_batch_events <= MAX_BATCH_EVENTS:
            raise ValueError(f"max_batch_events must be 1 to {MAX_BATCH_EVENTS}")
        if not 1024 <= self.max_batch_bytes <= MAX_BATCH_BYTES:
            raise ValueError(f"max_batch_bytes must be 1024 to {MAX_BATCH_BYTES}")
        if self.flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        if self.backoff < 0 or self.max_backoff < self.backoff:
            raise ValueError("need 0 <= backoff <= max_backoff")
        if self.durability not in ("full", "normal"):
            raise ValueError('durability must be "full" or "normal"')


class Spool:
    """An open spool file, its lock, and the sender's schedule."""

    def __init__(self, path: PathLike, options: SpoolOptions) -> None:
        self.options = options
        self._store = SpoolStore.open(Path(path), options.durability)
        self._cond = threading.Condition()
        self._closing = False
        self._closed = False
        # Events already in the file when it was opened are due at once (a restart resumes).
        self._flush_to = self._store.last_id()
        self._pressed = self._used() >= self._high_water_bytes()
        self._failures = 0  # rounds in a row that kept events
        self._spooled = self._accepted = self._rejected = self._batches = self._rounds = 0
        self._last_error: str | None = None

    @property
    def path(self) -> Path:
        return self._store.path

    # -- producers ---------------------------------------------------------------------------
    def put(self, events: Sequence[PreparedEvent], timeout: float | None = None) -> None:
        """Spool events atomically, waiting up to `timeout` (default `block_timeout`) for room."""
        size = self._checked_size(events)
        wait = self.options.block_timeout if timeout is None else timeout
        with self._cond:
            self._check_open()
            if not self._cond.wait_for(lambda: self._closing or self._fits(size), wait):
                raise self._full(size)
            self._check_open()
            self._append(events)
        self._after_put()

    def try_put(self, events: Sequence[PreparedEvent]) -> bool:
        """Spool events atomically if there is room now (what the async client polls)."""
        size = self._checked_size(events)
        with self._cond:
            self._check_open()
            if not self._fits(size):
                return False
            self._append(events)
        self._after_put()
        return True

    def full_error(self, events: Sequence[PreparedEvent]) -> QueueFullError:
        """The error `put` raises after waiting in vain (for the async client's own wait)."""
        return self._full(sum(len(event.body) for event in events))

    # -- the sender --------------------------------------------------------------------------
    def next_batch(self, max_wait: float | None = None) -> list[SpooledEvent] | None:
        """Wait until a batch is due and return it (oldest first); None once closing; [] when
        `max_wait` seconds passed first (the async client's task waits in slices)."""
        options = self.options
        end = None if max_wait is None else time.monotonic() + max_wait
        with self._cond:
            while not self._closing:
                wait: float | None = None
                first = self._store.first()
                if first is not None:
                    first_id, spooled_at = first
                    wait = spooled_at + options.flush_interval - time.time()
                    if first_id <= self._flush_to or self._batch_is_full() or wait <= 0:
                        return self._take()
                if end is not None:
                    left = end - time.monotonic()
                    if left <= 0:
                        return []
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)
            return None

    def settle(self, verdict: Verdict) -> float | None:
        """Apply a round's verdict; returns how long to wait before the next round (None: go on)."""
        with self._cond:
            if self._closed:  # closed while the round ran: the events stay for the next open
                return None
            self._store.settle(verdict.delivered, verdict.refused)
            self._batches += 1
            self._accepted += len(verdict.delivered)
            self._rejected += len(verdict.refused)
            delay = None
            if verdict.kept:
                self._failures += 1
                self._rounds += 1
                self._last_error = str(verdict.error) if verdict.error else "sink_unavailable"
                options = self.options
                delay = backoff(
                    self._failures, verdict.retry_after, options.backoff, options.max_backoff
                )
            else:
                self._failures = 0
            if self._used() < self._high_water_bytes():
                self._pressed = False
            self._cond.notify_all()
        if verdict.kept:
            logger.warning(
                "audit-ingest: %d spooled event(s) not delivered (%s); next try in %.1f s",
                len(verdict.kept),
                self._last_error,
                delay,
            )
        report_failures(self.options.on_error, [_failed(r) for r in verdict.refused])
        return delay

    def pause(self, seconds: float) -> bool:
        """Wait `seconds` before the next round; False when the spool is closing meanwhile."""
        with self._cond:
            return not self._cond.wait_for(lambda: self._closing, seconds)

    # -- everyone ----------------------------------------------------------------------------
    def flush(self, timeout: float | None) -> bool:
        """Send everything spooled so far now; True once none of it is pending."""
        with self._cond:
            target = self._store.last_id()
            self._flush_to = max(self._flush_to, target)
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._closed or self._drained(target), timeout)
            return not self._closed and self._drained(target)

    def begin_close(self) -> None:
        """Stop taking events and wake the sender (it ends after its current round)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def close(self) -> None:
        """Close the file (and so release its lock); what is pending stays for the next open."""
        with self._cond:
            self._closing = True
            if not self._closed:
                self._closed = True
                self._store.close()
            self._cond.notify_all()

    @property
    def closing(self) -> bool:
        return self._closing

    def stats(self) -> SpoolStats:
        with self._cond:
            store = self._store
            return SpoolStats(
                pending=store.pending,
                pending_bytes=store.pending_bytes,
                dead_letters=store.dead,
                dead_letter_bytes=store.dead_bytes,
                max_bytes=self.options.max_bytes,
                spooled=self._spooled,
                accepted=self._accepted,
                rejected=self._rejected,
                batches=self._batches,
                failed_rounds=self._rounds,
                last_error=self._last_error,
            )

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        with self._cond:
            self._check_open()
            return self._store.dead_letters(limit)

    def requeue_dead_letters(self) -> int:
        with self._cond:
            self._check_open()
            moved = self._store.requeue_dead_letters()
            self._flush_to = max(self._flush_to, self._store.last_id())
            self._cond.notify_all()
            return moved

    def purge_dead_letters(self) -> int:
        with self._cond:
            self._check_open()
            purged = self._store.purge_dead_letters()
            self._pressed = self._used() >= self._high_water_bytes()
            self._cond.notify_all()
            return purged

    # -- under the lock ----------------------------------------------------------------------
    def _checked_size(self, events: Sequence[PreparedEvent]) -> int:
        for event in events:
            if batch_body_size(1, len(event.body)) > self.options.max_batch_bytes:
                raise ValueError(
                    f"the event is {len(event.body)} bytes: over max_batch_bytes "
                    f"({self.options.max_batch_bytes}) on its own"
                )
        return sum(len(event.body) for event in events)

    def _check_open(self) -> None:
        if self._closing:
            raise RuntimeError("this spool is closed")

    def _used(self) -> int:
        return self._store.pending_bytes + self._store.dead_bytes

    def _high_water_bytes(self) -> float:
        return self.options.max_bytes * self.options.high_water

    def _fits(self, size: int) -> bool:
        return self._used() + size <= self.options.max_bytes

    def _full(self, size: int) -> QueueFullError:
        return QueueFullError(
            f"the spool {self.path} is full: {self._used()} of {self.options.max_bytes} bytes "
            f"used, {size} more did not fit within {self.options.block_timeout} s"
        )

    def _append(self, events: Sequence[PreparedEvent]) -> None:
        was_empty = self._store.pending == 0
        self._store.append(events)
        self._spooled += len(events)
        if was_empty or self._batch_is_full():
            self._cond.notify_all()

    def _after_put(self) -> None:
        """Call `on_pressure` (outside the lock) when this put crossed the high-water mark."""
        with self._cond:
            crossed = not self._pressed and self._used() >= self._high_water_bytes()
            if crossed:
                self._pressed = True
        if crossed:
            stats = self.stats()
            logger.warning("audit-ingest: the spool %s is %.0f%% full", self.path, 100 * stats.fill)
            if self.options.on_pressure is not None:
                try:
                    self.options.on_pressure(stats)
                except Exception:
                    logger.exception("audit-ingest: the on_pressure callback raised")

    def _batch_is_full(self) -> bool:
        store, options = self._store, self.options
        return store.pending >= options.max_batch_events or (
            batch_body_size(store.pending, store.pending_bytes) >= options.max_batch_bytes
        )

    def _take(self) -> list[SpooledEvent]:
        """The oldest events that fit one batch (at least one)."""
        options = self.options
        batch: list[SpooledEvent] = []
        size = 0
        for spooled in self._store.oldest(options.max_batch_events):
            grown = size + len(spooled.event.body)
            if batch and batch_body_size(len(batch) + 1, grown) > options.max_batch_bytes:
                break
            batch.append(spooled)
            size = grown
        return batch

    def _drained(self, target: int) -> bool:
        first = self._store.first()
        return first is None or first[0] > target


def _failed(rejection: Rejection) -> FailedEvent:
    spooled = rejection.spooled
    return FailedEvent(
        event=spooled.event.payload,
        idempotency_key=spooled.event.idempotency_key,
        errors=rejection.errors,
    )
