"""`SpoolingClient`: events written to a file on disk before `send` returns, sent from a thread.

The spool itself (file, room, schedule) is `_spool.py`, shared with the async client; this
module only adds a thread that sends and waits.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from audit_ingest_sdk._buffer import DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_BATCH_BYTES
from audit_ingest_sdk._failures import ErrorCallback
from audit_ingest_sdk._models import EventInput
from audit_ingest_sdk._prepare import prepare_event
from audit_ingest_sdk._sender import BatchSender
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
from audit_ingest_sdk._spool_delivery import drive
from audit_ingest_sdk._spool_store import DeadLetter, Durability

logger = logging.getLogger("audit_ingest_sdk")

DEFAULT_CLOSE_TIMEOUT = 5.0


class SpoolingClient:
    """Spools events in a SQLite file and sends them in batches from one background thread.

    ```python
    with AuditClient(key, url) as client, client.spool("/var/lib/app/audit.spool") as spool:
        spool.send(event)  # on disk when this returns; sent in the background
    ```

    An event leaves the file only once the server stored it (202), or goes to the file's dead
    letters when the server refused it for good (`on_error` hears of it). Anything else (the
    service down, 429, 5xx, no answer) keeps it, to be sent again with the same idempotency
    key after `Retry-After` or a backoff, for as long as it takes; a client that opens the
    file later (after a crash, `kill -9` included) sends what is left. The options are those
    of `SpoolOptions`. One client per file: another one, in any process, gets
    `SpoolLockedError`. Thread-safe: any number of threads may `send`.
    """

    def __init__(
        self,
        client: BatchSender,
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
        close_at_exit: bool = True,
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
        self._close_at_exit = close_at_exit
        self._thread = threading.Thread(target=self._run, name="audit-ingest-spool", daemon=True)
        self._thread.start()
        if close_at_exit:
            atexit.register(self.close)

    @property
    def options(self) -> SpoolOptions:
        """The options this spool runs with."""
        return self._spool.options

    @property
    def path(self) -> Path:
        """The spool file."""
        return self._spool.path

    def send(
        self, event: EventInput, *, idempotency_key: str | None = None, timeout: float | None = None
    ) -> str:
        """Write one event to the spool; returns its idempotency key once it is on disk.

        The key is yours (`idempotency_key`, or the event's own), else a new one, fixed now:
        every later attempt, in this process or after a restart, sends the same bytes. When
        the spool is full, waits up to `timeout` (default `block_timeout`) seconds for room,
        then raises `QueueFullError`; nothing is dropped. Raises `ValueError` for an event
        that cannot be serialised or could never fit a batch, and `RuntimeError` after
        `close()`.
        """
        stamp_time = self._client.config.stamp_time
        prepared = prepare_event(event, idempotency_key=idempotency_key, stamp_time=stamp_time)
        self._spool.put([prepared], timeout)
        return prepared.idempotency_key

    def send_many(self, events: Iterable[EventInput], *, timeout: float | None = None) -> list[str]:
        """Write several events in one transaction (all or none, one fsync); returns their keys."""
        stamp_time = self._client.config.stamp_time
        prepared = [prepare_event(event, stamp_time=stamp_time) for event in events]
        if prepared:
            self._spool.put(prepared, timeout)
        return [event.idempotency_key for event in prepared]

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything spooled so far now; True once the server stored (or refused) all of
        it, False if `timeout` seconds passed first (it stays spooled)."""
        if threading.current_thread() is self._thread:
            return False  # called from on_error: waiting here would wait for ourselves
        return self._spool.flush(timeout)

    def close(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Try to send what is spooled for up to `timeout` seconds, then stop and close the
        file. What is left stays in it, for the next client that opens it."""
        if self._close_at_exit:
            atexit.unregister(self.close)
        if self._spool.closing:
            return
        started = time.monotonic()
        if timeout is None or timeout > 0:
            self.flush(timeout)
        self._spool.begin_close()
        if threading.current_thread() is not self._thread:
            left = None if timeout is None else max(0.1, timeout - (time.monotonic() - started))
            # A round still in flight is abandoned: its events stay in the file, and a resend
            # carries the same idempotency keys.
            self._thread.join(left)
        self._spool.close()

    def stats(self) -> SpoolStats:
        """Depth (pending events and bytes), dead letters, and counters so far."""
        return self._spool.stats()

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest events the server refused for good, with its reasons."""
        return self._spool.dead_letters(limit)

    def requeue_dead_letters(self) -> int:
        """Send every dead letter again (same bytes and key); returns how many."""
        return self._spool.requeue_dead_letters()

    def purge_dead_letters(self) -> int:
        """Delete every dead letter (freeing its room); returns how many."""
        return self._spool.purge_dead_letters()

    def __enter__(self) -> SpoolingClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        spool = self._spool
        while True:
            try:
                batch = spool.next_batch()
                if batch is None:
                    return
                delay = spool.settle(drive(batch, self._client.send_prepared))
            except Exception:
                # The file failed (disk full, I/O error): nothing was lost, try again later.
                logger.exception("audit-ingest: the spool could not record a round")
                delay = spool.options.max_backoff
            if delay is not None and not spool.pause(delay):
                return
