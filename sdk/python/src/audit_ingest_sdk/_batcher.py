"""`BatchingClient`: queue events in memory, send them in batches from a background thread."""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from audit_ingest_sdk._buffer import (
    DEFAULT_BLOCK_TIMEOUT,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_BATCH_EVENTS,
    DEFAULT_MAX_QUEUE_SIZE,
    BatcherOptions,
    BatcherStats,
    EventBuffer,
    Overflow,
)
from audit_ingest_sdk._errors import AuditIngestError, PayloadTooLargeError
from audit_ingest_sdk._failures import (
    ErrorCallback,
    FailedEvent,
    failures_from_error,
    failures_from_result,
)
from audit_ingest_sdk._models import EventInput
from audit_ingest_sdk._prepare import PreparedEvent, prepare_event
from audit_ingest_sdk._results import BatchResult
from audit_ingest_sdk._sender import BatchSender

logger = logging.getLogger("audit_ingest_sdk")


class BatchingClient:
    """Collects events and sends them in batches from one background thread.

    ```python
    with AuditClient(key, url) as client, client.batcher(on_error=print) as batcher:
        batcher.enqueue(event)  # returns at once; never waits for the network
    ```

    A batch leaves when `max_batch_events` are queued, when the queue holds `max_batch_bytes`
    of body, or `flush_interval` seconds after its oldest event arrived (see
    `BatcherOptions`). Transient failures are retried by the client's retry policy with the
    same idempotency keys; events that still cannot be delivered, or that the server refuses,
    go to `on_error` as `FailedEvent`s. `close()` (also run at interpreter exit, and by the
    client's `close()`) sends everything queued.
    """

    def __init__(
        self,
        client: BatchSender,
        *,
        max_batch_events: int = DEFAULT_MAX_BATCH_EVENTS,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        overflow: Overflow = "block",
        on_error: ErrorCallback = None,
        flush_at_exit: bool = True,
        block_timeout: float = DEFAULT_BLOCK_TIMEOUT,
    ) -> None:
        self._client = client
        self._options = BatcherOptions(
            max_batch_events=max_batch_events,
            max_batch_bytes=max_batch_bytes,
            flush_interval=flush_interval,
            max_queue_size=max_queue_size,
            overflow=overflow,
            on_error=on_error,
            block_timeout=block_timeout,
        )
        self._buffer = EventBuffer(max_queue_size, overflow)
        self._cond = threading.Condition()
        self._enqueued = 0  # events taken in
        self._taken = 0  # events taken out of the buffer by the worker
        self._done = 0  # events whose delivery is over (stored or reported)
        self._flush_to = 0  # send without waiting until `_taken` reaches this
        self._accepted = 0
        self._rejected = 0
        self._batches = 0
        self._closing = False
        self._flush_at_exit = flush_at_exit
        self._thread = threading.Thread(target=self._run, name="audit-ingest-batcher", daemon=True)
        self._thread.start()
        if flush_at_exit:
            atexit.register(self.close)

    @property
    def options(self) -> BatcherOptions:
        """The options this batcher runs with."""
        return self._options

    def enqueue(self, event: EventInput, *, idempotency_key: str | None = None) -> bool:
        """Queue one event for sending; returns at once while the queue has room.

        When the queue is full: waits up to `block_timeout` seconds for room, then raises
        `QueueFullError` (`overflow="block"`, the default); raises at once
        (`overflow="raise"`); or drops the event and returns False (`overflow="drop"`).
        Raises `ValueError` for an event that cannot be serialised or could never fit a
        batch, and `RuntimeError` after `close()`.
        """
        stamp_time = self._client.config.stamp_time
        prepared = prepare_event(event, idempotency_key=idempotency_key, stamp_time=stamp_time)
        self._options.check_size(prepared)
        with self._cond:
            if self._closing:
                raise RuntimeError("this batcher is closed")
            if self._options.overflow == "block" and self._buffer.full:
                # The worker notifies each time it takes a batch out of the queue.
                self._cond.wait_for(
                    lambda: self._closing or not self._buffer.full, self._options.block_timeout
                )
                if self._closing:
                    raise RuntimeError("this batcher is closed")
            if not self._buffer.push(prepared, time.monotonic()):
                return False
            self._enqueued += 1
            if len(self._buffer) == 1 or self._is_full():
                self._cond.notify_all()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far and wait until it is delivered (or reported).

        Returns False if `timeout` seconds passed first.
        """
        if threading.current_thread() is self._thread:
            return False  # called from on_error: waiting here would wait for ourselves
        with self._cond:
            target = self._enqueued
            self._flush_to = max(self._flush_to, target)
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Send everything queued, then stop the thread. Later `enqueue` calls raise."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if self._flush_at_exit:
            atexit.unregister(self.close)

    def stats(self) -> BatcherStats:
        """The counters so far."""
        with self._cond:
            return BatcherStats(
                enqueued=self._enqueued,
                accepted=self._accepted,
                rejected=self._rejected,
                dropped=self._buffer.dropped,
                queued=len(self._buffer),
                batches=self._batches,
            )

    def __enter__(self) -> BatchingClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _is_full(self) -> bool:
        options = self._options
        return self._buffer.ready(options.max_batch_events, options.max_batch_bytes)

    def _next_batch(self) -> list[PreparedEvent] | None:
        """Wait (holding the lock) until a batch is due; None once closed and empty."""
        while True:
            if self._buffer:
                oldest = self._buffer.oldest or 0.0
                wait = oldest + self._options.flush_interval - time.monotonic()
                if self._closing or self._taken < self._flush_to or self._is_full() or wait <= 0:
                    options = self._options
                    batch = self._buffer.take(options.max_batch_events, options.max_batch_bytes)
                    self._taken += len(batch)
                    self._cond.notify_all()  # room for producers blocked on a full queue
                    return batch
                self._cond.wait(wait)
            elif self._closing:
                return None
            else:
                self._cond.wait()

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
            if batch is None:
                return
            accepted, failures = self._deliver(batch)
            self._options.report(failures)
            with self._cond:
                self._accepted += accepted
                self._rejected += len(failures)
                self._batches += 1
                self._done += len(batch)
                self._cond.notify_all()

    def _deliver(self, batch: list[PreparedEvent]) -> tuple[int, list[FailedEvent]]:
        return deliver_splitting(self._client.send_prepared, batch)


def deliver_splitting(
    send: Callable[[list[PreparedEvent]], BatchResult], batch: list[PreparedEvent]
) -> tuple[int, list[FailedEvent]]:
    """Deliver a batch; a 413 splits it in halves. Returns (stored count, failures)."""
    try:
        result = send(batch)
    except PayloadTooLargeError as exc:
        if len(batch) == 1:
            return 0, failures_from_error(batch, exc)
        middle = len(batch) // 2
        left = deliver_splitting(send, batch[:middle])
        right = deliver_splitting(send, batch[middle:])
        return left[0] + right[0], left[1] + right[1]
    except AuditIngestError as exc:
        return 0, failures_from_error(batch, exc)
    except Exception as exc:
        logger.exception("audit-ingest: sending a batch failed unexpectedly")
        return 0, failures_from_error(batch, AuditIngestError(f"unexpected error: {exc!r}"))
    return result.accepted, failures_from_result(batch, result)
