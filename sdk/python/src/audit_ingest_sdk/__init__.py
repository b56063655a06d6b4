"""Python SDK for the audit-event ingestion API.

```python
from audit_ingest_sdk import AuditClient, AuditEvent, Actor, Action, Resource

with AuditClient(api_key="aik_...", base_url="http://127.0.0.1:8080") as client:
    accepted = client.send(AuditEvent(actor=Actor("user-123"), action="user.created",
                                      resource=Resource("user", "user-456")))
```

`AuditClient` / `AsyncAuditClient` send one event or one batch per call, with retries;
`client.batcher()` queues events and sends them in batches in the background.
"""

from audit_ingest_sdk._version import __version__
from audit_ingest_sdk.async_batcher import AsyncBatchingClient
from audit_ingest_sdk.async_client import AsyncAuditClient
from audit_ingest_sdk.batcher import BatchingClient
from audit_ingest_sdk.buffer import BatcherOptions, BatcherStats
from audit_ingest_sdk.client import AuditClient
from audit_ingest_sdk.errors import (
    APIStatusError,
    AuditIngestError,
    AuthenticationError,
    PayloadTooLargeError,
    PermissionDeniedError,
    QueueFullError,
    RateLimitedError,
    ServerError,
    ServiceUnavailableError,
    TransportError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from audit_ingest_sdk.models import Action, Actor, AuditEvent, EventInput, Resource, Result
from audit_ingest_sdk.results import Accepted, BatchItem, BatchResult, FailedEvent, FieldError
from audit_ingest_sdk.retry import RetryPolicy

__all__ = [
    "APIStatusError",
    "Accepted",
    "Action",
    "Actor",
    "AsyncAuditClient",
    "AsyncBatchingClient",
    "AuditClient",
    "AuditEvent",
    "AuditIngestError",
    "AuthenticationError",
    "BatchItem",
    "BatchResult",
    "BatcherOptions",
    "BatcherStats",
    "BatchingClient",
    "EventInput",
    "FailedEvent",
    "FieldError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "QueueFullError",
    "RateLimitedError",
    "Resource",
    "Result",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "TransportError",
    "UnsupportedMediaTypeError",
    "ValidationError",
    "__version__",
]
