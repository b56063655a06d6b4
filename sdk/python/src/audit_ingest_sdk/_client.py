"""`AuditClient`: the synchronous client (httpx.Client), one request per call, with retries."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

import httpx
import tenacity

from audit_ingest_sdk._batcher import BatchingClient
from audit_ingest_sdk._config import DEFAULT_TIMEOUT, ClientConfig
from audit_ingest_sdk._delivery import BatchDelivery
from audit_ingest_sdk._errors import AuditIngestError, ValidationError, error_from_transport
from audit_ingest_sdk._models import EventInput
from audit_ingest_sdk._prepare import PreparedEvent, prepare_batch, prepare_event
from audit_ingest_sdk._results import Accepted, BatchResult
from audit_ingest_sdk._retry import RetryPolicy, sync_retrying
from audit_ingest_sdk._spool import PathLike
from audit_ingest_sdk._spooling_client import SpoolingClient
from audit_ingest_sdk._wire import Request, batch_request, read_accepted, single_request


class AuditClient:
    """Sends audit events to the ingestion API, retrying transient failures.

    ```python
    with AuditClient("aik_...", "https://audit.example.com") as client:
        client.send({"actor": {"id": "u-1"}, "action": {"name": "user.login"},
                     "resource": {"type": "app", "id": "console"}})
    ```

    `api_key` and `base_url` default to the environment variables `AUDIT_INGEST_API_KEY` and
    `AUDIT_INGEST_URL`. `timeout` is per request (seconds or an `httpx.Timeout`);
    `max_retries` overrides `retry.max_retries`. `gzip=True` compresses bodies over
    `gzip_threshold` bytes (only for servers that accept `Content-Encoding: gzip`; others
    answer 4xx). `stamp_time` sets a missing `timestamp` to the time the event was handed
    over. Pass `http_client` to use your own `httpx.Client` (it is not closed by `close()`).
    `sleep` is how the client waits between attempts (tests replace it).

    The client is thread-safe; share one per process.
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
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
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
        self._http = http_client or httpx.Client(timeout=timeout)
        self._sleep = sleep
        self._batchers: weakref.WeakSet[BatchingClient] = weakref.WeakSet()
        self._spools: weakref.WeakSet[SpoolingClient] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def config(self) -> ClientConfig:
        """The settings this client was built with."""
        return self._config

    def send(self, event: EventInput, *, idempotency_key: str | None = None) -> Accepted:
        """POST one event; returns once it is durably stored.

        Raises `ValidationError` (400), `AuthenticationError` (401), `PermissionDeniedError`
        (403), `PayloadTooLargeError` (413), and after the retries `RateLimitedError`,
        `ServiceUnavailableError` or `TransportError`.
        """
        prepared = prepare_event(
            event, idempotency_key=idempotency_key, stamp_time=self._config.stamp_time
        )
        request = single_request(self._config, prepared)
        attempts = 0

        def attempt() -> Accepted:
            nonlocal attempts
            attempts += 1
            return read_accepted(self._post(request))

        try:
            result: Accepted = self._retrying()(attempt)
        except AuditIngestError as exc:
            exc.attempts = attempts
            raise
        return result

    def send_batch(self, events: Iterable[EventInput]) -> BatchResult:
        """POST 1 to 1000 events as one batch; returns each event's outcome.

        Invalid events are rejected one by one (`BatchResult.rejected_items`) while the valid
        ones are stored. Events the broker could not acknowledge in time are sent again (same
        idempotency keys) within the retry policy. Raises like `send` when the batch as a
        whole fails (`ValidationError` when no event is valid).
        """
        return self.send_prepared(prepare_batch(events, stamp_time=self._config.stamp_time))

    def send_prepared(self, events: Sequence[PreparedEvent]) -> BatchResult:
        """Send events the SDK already prepared as one batch (what `send_batch` and batchers
        use: the `BatchSender` protocol). Retries and raises like `send_batch`."""
        delivery = BatchDelivery(events)
        attempts = 0

        def attempt() -> BatchDelivery:
            nonlocal attempts
            attempts += 1
            delivery.record(self._post(batch_request(self._config, delivery.pending())))
            return delivery

        retrying = self._retrying(retry_on_result=lambda state: state.needs_resend)
        try:
            retrying(attempt)
        except AuditIngestError as exc:
            if not delivery.answered:
                exc.attempts = attempts
                if isinstance(exc, ValidationError):
                    exc.batch_result = delivery.refused(exc)
                raise
        return delivery.result()

    def batcher(self, **options: Any) -> BatchingClient:
        """A `BatchingClient` sending through this client (see its options).

        Closing this client closes (and so flushes) its batchers first.
        """
        batcher = BatchingClient(self, **options)
        with self._lock:
            self._batchers.add(batcher)
        return batcher

    def spool(self, path: PathLike, **options: Any) -> SpoolingClient:
        """A `SpoolingClient` spooling to the file `path` and sending through this client
        (see its options). Closing this client closes its spools first."""
        spool = SpoolingClient(self, path, **options)
        with self._lock:
            self._spools.add(spool)
        return spool

    def close(self) -> None:
        """Close this client's spools and batchers (flushing them), then the HTTP client (if
        owned)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            spools, batchers = list(self._spools), list(self._batchers)
        for spool in spools:
            spool.close()
        for batcher in batchers:
            batcher.close()
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> AuditClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _retrying(self, retry_on_result: Callable[[Any], bool] | None = None) -> tenacity.Retrying:
        return sync_retrying(self._config.retry, sleep=self._sleep, retry_on_result=retry_on_result)

    def _post(self, request: Request) -> httpx.Response:
        try:
            return self._http.post(
                self._config.url(request.path), content=request.content, headers=request.headers
            )
        except httpx.TransportError as exc:
            raise error_from_transport(exc) from exc
