"""`AsyncBatchingClient`: the batcher for asyncio code, sending from a background task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

from audit_ingest_sdk._buffer import (
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
from audit_ingest_sdk._sender import AsyncBatchSender

logger = logging.getLogger("audit_ingest_sdk")


class AsyncBatchingClient:
    """The asyncio batcher: `enqueue` is a plain (non-async) call that returns at once.

    ```python
    async with AsyncAuditClient(key, url) as client, client.batcher() as batcher:
        batcher.enqueue(event)
    ```

    Options and behaviour are those of `BatchingClient`, with a task of the running event
    loop instead of a thread, and `overflow="raise"` by default (`"block"` is refused: the
    task that makes room runs in the loop `enqueue` would block). Nothing runs at
    interpreter exit: `await close()` (or leave the `async with` block, or close the client)
    to send what is queued.
    """

    def __init__(
        self,
        client: AsyncBatchSender,
        *,
        max_batch_events: int = DEFAULT_MAX_BATCH_EVENTS,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        overflow: Overflow = "raise",
        on_error: ErrorCallback = None,
    ) -> None:
        if overflow == "block":
            # enqueue runs in the event loop, and so does the task that would make room.
            raise ValueError(
                'overflow="block" cannot wait inside the event loop: use "raise" (the default), '
                '"drop", or an AsyncSpoolingClient (its send awaits room)'
            )
        self._client = client
        self._options = BatcherOptions(
            max_batch_events=max_batch_events,
            max_batch_bytes=max_batch_bytes,
            flush_interval=flush_interval,
            max_queue_size=max_queue_size,
            overflow=overflow,
            on_error=on_error,
        )
        self._buffer = EventBuffer(max_queue_size, overflow)
        self._enqueued = 0
        self._taken = 0
        self._done = 0
        self._flush_to = 0
        self._accepted = 0
        self._rejected = 0
        self._batches = 0
        self._closing = False
        # Made on the first enqueue, inside the running loop.
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._progress: asyncio.Condition | None = None

    @property
    def options(self) -> BatcherOptions:
        """The options this batcher runs with."""
        return self._options

    def enqueue(self, event: EventInput, *, idempotency_key: str | None = None) -> bool:
        """Queue one event; returns at once (call it from the event loop's thread).

        When the queue is full: raises `QueueFullError` (`overflow="raise"`, the default) or
        drops the event and returns False (`overflow="drop"`). Raises `RuntimeError` after
        `close()`.
        """
        if self._closing:
            raise RuntimeError("this batcher is closed")
        stamp_time = self._client.config.stamp_time
        prepared = prepare_event(event, idempotency_key=idempotency_key, stamp_time=stamp_time)
        self._options.check_size(prepared)
        wakeup = self._start()
        if not self._buffer.push(prepared, time.monotonic()):
            return False
        self._enqueued += 1
        wakeup.set()
        return True

    async def flush(self) -> None:
        """Send everything queued so far and wait until it is delivered (or reported)."""
        if self._task is None or self._progress is None:
            return
        target = self._enqueued
        self._flush_to = max(self._flush_to, target)
        self._start().set()
        async with self._progress:
            await self._progress.wait_for(lambda: self._done >= target)

    async def close(self) -> None:
        """Send everything queued, then stop the task. Later `enqueue` calls raise."""
        self._closing = True
        if self._task is None:
            return
        self._start().set()
        await asyncio.shield(self._task)

    def stats(self) -> BatcherStats:
        """The counters so far."""
        return BatcherStats(
            enqueued=self._enqueued,
            accepted=self._accepted,
            rejected=self._rejected,
            dropped=self._buffer.dropped,
            queued=len(self._buffer),
            batches=self._batches,
        )

    async def __aenter__(self) -> AsyncBatchingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _start(self) -> asyncio.Event:
        if self._wakeup is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "AsyncBatchingClient.enqueue must be called from a running event loop"
                ) from None
            self._wakeup = asyncio.Event()
            self._progress = asyncio.Condition()
            self._task = loop.create_task(self._run(), name="audit-ingest-batcher")
        return self._wakeup

    def _due_batch(self) -> tuple[list[PreparedEvent] | None, float | None]:
        """A batch to send now, else how long to wait (None: until woken)."""
        options = self._options
        if not self._buffer:
            return None, None
        oldest = self._buffer.oldest or 0.0
        wait = oldest + options.flush_interval - time.monotonic()
        full = self._buffer.ready(options.max_batch_events, options.max_batch_bytes)
        if self._closing or self._taken < self._flush_to or full or wait <= 0:
            batch = self._buffer.take(options.max_batch_events, options.max_batch_bytes)
            self._taken += len(batch)
            return batch, None
        return None, wait

    async def _run(self) -> None:
        wakeup, progress = self._wakeup, self._progress
        assert wakeup is not None
        assert progress is not None
        while True:
            wakeup.clear()
            batch, wait = self._due_batch()
            if batch is None:
                if self._closing and not self._buffer:
                    return
                # asyncio.TimeoutError is not the builtin TimeoutError before Python 3.11.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), wait)
                continue
            accepted, failures = await deliver_splitting(self._client.send_prepared, batch)
            self._options.report(failures)
            self._accepted += accepted
            self._rejected += len(failures)
            self._batches += 1
            self._done += len(batch)
            async with progress:
                progress.notify_all()


async def deliver_splitting(
    send: Callable[[list[PreparedEvent]], Awaitable[BatchResult]], batch: list[PreparedEvent]
) -> tuple[int, list[FailedEvent]]:
    """Deliver a batch; a 413 splits it in halves. Returns (stored count, failures)."""
    try:
        result = await send(batch)
    except PayloadTooLargeError as exc:
        if len(batch) == 1:
            return 0, failures_from_error(batch, exc)
        middle = len(batch) // 2
        left = await deliver_splitting(send, batch[:middle])
        right = await deliver_splitting(send, batch[middle:])
        return left[0] + right[0], left[1] + right[1]
    except AuditIngestError as exc:
        return 0, failures_from_error(batch, exc)
    except Exception as exc:
        logger.exception("audit-ingest: sending a batch failed unexpectedly")
        return 0, failures_from_error(batch, AuditIngestError(f"unexpected error: {exc!r}"))
    return result.accepted, failures_from_result(batch, result)
