"""`AsyncSpoolingClient`: the spool for asyncio code, sending from a task of the running loop.

The spool (`_spool.py`) is shared with the sync client. Its file calls (an fsync per send
with `durability="full"`) and its waits run in worker threads (`asyncio.to_thread`), so the
event loop never blocks on the disk; the task waits for a due batch in short slices, so an
unclosed client cannot hold the loop's shutdown forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

from audit_ingest_sdk._buffer import DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_BATCH_BYTES
from audit_ingest_sdk._failures import ErrorCallback
from audit_ingest_sdk._models import EventInput
from audit_ingest_sdk._prepare import PreparedEvent, prepare_event
from audit_ingest_sdk._sender import AsyncBatchSender
from audit_ingest_sdk._spool import (
    DEFAULT_BACKOFF,
    DEFAULT_BLOCK_TIMEOUT,
    DEFAULT_HIGH_WATER,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_MAX_BYTES,
    DEFAULT_SPOOL_BATCH_EVENTS,
    PathLike,
    PressureCallback,
    Spool,
    SpoolOptions,
    SpoolStats,
)
from audit_ingest_sdk._spool_delivery import drive_async
from audit_ingest_sdk._spool_store import DeadLetter, Durability

logger = logging.getLogger("audit_ingest_sdk")

DEFAULT_CLOSE_TIMEOUT = 5.0
ROOM_POLL_SECONDS = 0.05  # how often a send waiting for room looks again
WAIT_SLICE_SECONDS = 1.0  # the longest the task waits in a worker thread at a time


class AsyncSpoolingClient:
    """The spool for asyncio code; options and behaviour are those of `SpoolingClient`.

    ```python
    async with AsyncAuditClient(key, url) as client, client.spool("audit.spool") as spool:
        await spool.send(event)  # on disk when this returns
    ```

    `send` awaits room when the spool is full (it does not block the loop). Nothing runs at
    interpreter exit: `await close()` (or leave `async with`, or close the client); what is
    not sent stays in the file for the next client.
    """

    def __init__(
        self,
        client: AsyncBatchSender,
        path: PathLike,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        block_timeout: float = DEFAULT_BLOCK_TIMEOUT,
        high_water: float = DEFAULT_HIGH_WATER,
        on_pressure: PressureCallback = None,
        max_batch_events: int = DEFAULT_SPOOL_BATCH_EVENTS,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        durability: Durability = "full",
        on_error: ErrorCallback = None,
    ) -> None:
        options = SpoolOptions(
            max_bytes=max_bytes,
            block_timeout=block_timeout,
            high_water=high_water,
            on_pressure=on_pressure,
            max_batch_events=max_batch_events,
            max_batch_bytes=max_batch_bytes,
            flush_interval=flush_interval,
            backoff=backoff,
            max_backoff=max_backoff,
            durability=durability,
            on_error=on_error,
        )
        self._client = client
        self._spool = Spool(path, options)
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        with contextlib.suppress(RuntimeError):  # no running loop: start on first use
            self._start()

    @property
    def options(self) -> SpoolOptions:
        """The options this spool runs with."""
        return self._spool.options

    @property
    def path(self) -> Path:
        """The spool file."""
        return self._spool.path

    async def send(
        self, event: EventInput, *, idempotency_key: str | None = None, timeout: float | None = None
    ) -> str:
        """Write one event to the spool; returns its idempotency key once it is on disk.

        Raises like `SpoolingClient.send` (`QueueFullError` after `timeout`, default
        `block_timeout`, seconds without room).
        """
        stamp_time = self._client.config.stamp_time
        prepared = prepare_event(event, idempotency_key=idempotency_key, stamp_time=stamp_time)
        await self._put([prepared], timeout)
        return prepared.idempotency_key

    async def send_many(
        self, events: Iterable[EventInput], *, timeout: float | None = None
    ) -> list[str]:
        """Write several events in one transaction (all or none); returns their keys."""
        stamp_time = self._client.config.stamp_time
        prepared = [prepare_event(event, stamp_time=stamp_time) for event in events]
        if prepared:
            await self._put(prepared, timeout)
        return [event.idempotency_key for event in prepared]

    async def flush(self, timeout: float | None = None) -> bool:
        """Send everything spooled so far now; True once none of it is pending."""
        self._start()
        return await asyncio.to_thread(self._spool.flush, timeout)

    async def close(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Try to send what is spooled for up to `timeout` seconds, then stop and close the
        file; what is left stays in it for the next client."""
        if self._spool.closing:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self._task is not None and (timeout is None or timeout > 0):
            await self.flush(timeout)
        self._spool.begin_close()
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            left = None if timeout is None else max(0.1, timeout - (loop.time() - started))
            try:
                await asyncio.wait_for(asyncio.shield(self._task), left)
            except asyncio.TimeoutError:  # noqa: UP041 - not the builtin one before Python 3.11
                # A round still in flight: its events stay in the file, resent later with
                # the same idempotency keys.
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await asyncio.to_thread(self._spool.close)

    def stats(self) -> SpoolStats:
        """Depth (pending events and bytes), dead letters, and counters so far."""
        return self._spool.stats()

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest events the server refused for good, with its reasons."""
        return await asyncio.to_thread(self._spool.dead_letters, limit)

    async def requeue_dead_letters(self) -> int:
        """Send every dead letter again (same bytes and key); returns how many."""
        return await asyncio.to_thread(self._spool.requeue_dead_letters)

    async def purge_dead_letters(self) -> int:
        """Delete every dead letter (freeing its room); returns how many."""
        return await asyncio.to_thread(self._spool.purge_dead_letters)

    async def __aenter__(self) -> AsyncSpoolingClient:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _start(self) -> None:
        """Start the sending task in the running loop (once); raises without a running loop."""
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._task = loop.create_task(self._run(), name="audit-ingest-spool")

    async def _put(self, events: Sequence[PreparedEvent], timeout: float | None) -> None:
        self._start()
        loop = asyncio.get_running_loop()
        wait = self._spool.options.block_timeout if timeout is None else timeout
        deadline = loop.time() + wait
        while not await asyncio.to_thread(self._spool.try_put, events):
            left = deadline - loop.time()
            if left <= 0:
                raise self._spool.full_error(events)
            await asyncio.sleep(min(ROOM_POLL_SECONDS, left))

    async def _run(self) -> None:
        spool, stop = self._spool, self._stop
        assert stop is not None
        while True:
            try:
                batch = await asyncio.to_thread(spool.next_batch, WAIT_SLICE_SECONDS)
                if batch is None:
                    return
                if not batch:
                    continue
                verdict = await drive_async(batch, self._client.send_prepared)
                delay = await asyncio.to_thread(spool.settle, verdict)
            except Exception:
                # The file failed (disk full, I/O error): nothing was lost, try again later.
                logger.exception("audit-ingest: the spool could not record a round")
                delay = spool.options.max_backoff
            if delay is not None:
                # asyncio.TimeoutError is not the builtin TimeoutError before Python 3.11.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return
