"""`AsyncAuditClient`: the asyncio client (httpx.AsyncClient), same behaviour as AuditClient."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

import httpx
import tenacity

from audit_ingest_sdk._async_batcher import AsyncBatchingClient
from audit_ingest_sdk._async_spooling_client import AsyncSpoolingClient
from audit_ingest_sdk._config import DEFAULT_TIMEOUT, ClientConfig
from audit_ingest_sdk._delivery import BatchDelivery
from audit_ingest_sdk._errors import AuditIngestError, ValidationError, error_from_transport
from audit_ingest_sdk._models import EventInput
from audit_ingest_sdk._prepare import PreparedEvent, prepare_batch, prepare_event
from audit_ingest_sdk._results import Accepted, BatchResult
from audit_ingest_sdk._retry import RetryPolicy, async_retrying
from audit_ingest_sdk._spool import PathLike
from audit_ingest_sdk._wire import Request, batch_request, read_accepted, single_request


class AsyncAuditClient:
    """Sends audit events from asyncio code; the arguments are those of `AuditClient`.

    ```python
    async with AsyncAuditClient("aik_...", "https://audit.example.com") as client:
        accepted = await client.send(event)
    ```

    `sleep` is awaited between attempts (tests replace it).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        gzip: bool = False,
        gzip_threshold: int | None = None,
        stamp_time: bool = True,
        http_client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._config = ClientConfig.build(
            api_key,
            base_url,
            max_retries=max_retries,
            retry=retry,
            gzip=gzip,
            gzip_threshold=gzip_threshold,
            stamp_time=stamp_time,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._sleep = sleep
        self._batchers: weakref.WeakSet[AsyncBatchingClient] = weakref.WeakSet()
        self._spools: weakref.WeakSet[AsyncSpoolingClient] = weakref.WeakSet()
        self._closed = False

    @property
    def config(self) -> ClientConfig:
        """The settings this client was built with."""
        return self._config

    async def send(self, event: EventInput, *, idempotency_key: str | None = None) -> Accepted:
        """POST one event; returns once it is durably stored (raises like `AuditClient.send`)."""
        prepared = prepare_event(
            event, idempotency_key=idempotency_key, stamp_time=self._config.stamp_time
        )
        request = single_request(self._config, prepared)
        attempts = 0

        async def attempt() -> Accepted:
            nonlocal attempts
            attempts += 1
            return read_accepted(await self._post(request))

        try:
            result: Accepted = await self._retrying()(attempt)
        except AuditIngestError as exc:
            exc.attempts = attempts
            raise
        return result

    async def send_batch(self, events: Iterable[EventInput]) -> BatchResult:
        """POST 1 to 1000 events as one batch (see `AuditClient.send_batch`)."""
        return await self.send_prepared(prepare_batch(events, stamp_time=self._config.stamp_time))

    async def send_prepared(self, events: Sequence[PreparedEvent]) -> BatchResult:
        """Send events the SDK already prepared as one batch (what `send_batch` and batchers
        use: the `AsyncBatchSender` protocol). Retries and raises like `send_batch`."""
        delivery = BatchDelivery(events)
        attempts = 0

        async def attempt() -> BatchDelivery:
            nonlocal attempts
            attempts += 1
            request = batch_request(self._config, delivery.pending())
            delivery.record(await self._post(request))
            return delivery

        retrying = self._retrying(retry_on_result=lambda state: state.needs_resend)
        try:
            await retrying(attempt)
        except AuditIngestError as exc:
            if not delivery.answered:
                exc.attempts = attempts
                if isinstance(exc, ValidationError):
                    exc.batch_result = delivery.refused(exc)
                raise
        return delivery.result()

    def batcher(self, **options: Any) -> AsyncBatchingClient:
        """An `AsyncBatchingClient` sending through this client (see its options).

        Closing this client closes (and so flushes) its batchers first.
        """
        batcher = AsyncBatchingClient(self, **options)
        self._batchers.add(batcher)
        return batcher

    def spool(self, path: PathLike, **options: Any) -> AsyncSpoolingClient:
        """An `AsyncSpoolingClient` spooling to the file `path` and sending through this
        client (see its options). Closing this client closes its spools first."""
        spool = AsyncSpoolingClient(self, path, **options)
        self._spools.add(spool)
        return spool

    async def close(self) -> None:
        """Close this client's spools and batchers (flushing them), then the HTTP client (if
        owned)."""
        if self._closed:
            return
        self._closed = True
        for spool in list(self._spools):
            await spool.close()
        for batcher in list(self._batchers):
            await batcher.close()
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncAuditClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _retrying(
        self, retry_on_result: Callable[[Any], bool] | None = None
    ) -> tenacity.AsyncRetrying:
        return async_retrying(
            self._config.retry, sleep=self._sleep, retry_on_result=retry_on_result
        )

    async def _post(self, request: Request) -> httpx.Response:
        try:
            return await self._http.post(
                self._config.url(request.path), content=request.content, headers=request.headers
            )
        except httpx.TransportError as exc:
            raise error_from_transport(exc) from exc
