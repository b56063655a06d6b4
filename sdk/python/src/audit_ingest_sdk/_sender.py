"""What a batcher needs from a client: its settings, and a way to send one prepared batch.

`AuditClient` and `AsyncAuditClient` implement these protocols; the batchers depend on them
alone, never on the client modules (the clients import the batchers, not the reverse).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from audit_ingest_sdk._config import ClientConfig
from audit_ingest_sdk._prepare import PreparedEvent
from audit_ingest_sdk._results import BatchResult


class BatchSender(Protocol):
    """Sends batches for `BatchingClient` (from its background thread)."""

    @property
    def config(self) -> ClientConfig:
        """The client's settings (the batcher reads `stamp_time`)."""
        ...

    def send_prepared(self, events: Sequence[PreparedEvent]) -> BatchResult:
        """Send already prepared events as one batch, with retries; raise like `send_batch`."""
        ...


class AsyncBatchSender(Protocol):
    """Sends batches for `AsyncBatchingClient` (from its task)."""

    @property
    def config(self) -> ClientConfig:
        """The client's settings (the batcher reads `stamp_time`)."""
        ...

    async def send_prepared(self, events: Sequence[PreparedEvent]) -> BatchResult:
        """Send already prepared events as one batch, with retries; raise like `send_batch`."""
        ...
