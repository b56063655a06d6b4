"""Python SDK for the audit-event ingestion API.

```python
from audit_ingest_sdk import AuditClient, AuditEvent, Actor, Action, Resource

with AuditClient(api_key="aik_...", base_url="http://127.0.0.1:8080") as client:
    accepted = client.send(AuditEvent(actor=Actor("user-123"), action="user.created",
                                      resource=Resource("user", "user-456")))
```

`AuditClient` / `AsyncAuditClient` send one event or one batch per call, with retries;
`client.batcher()` queues events in memory and sends them in batches in the background;
`client.spool(path)` does the same from a file on disk that survives crashes and outages.

Everything public is imported from here (`from audit_ingest_sdk import ...`); the modules
behind it are private (`_client`, `_wire`, ...) and may change without notice.
"""

from audit_ingest_sdk._async_batcher import AsyncBatchingClient
from audit_ingest_sdk._async_client import AsyncAuditClient
from audit_ingest_sdk._async_spooling_client import AsyncSpoolingClient
from audit_ingest_sdk._batcher import BatchingClient
from audit_ingest_sdk._buffer import BatcherOptions, BatcherStats
from audit_ingest_sdk._client import AuditClient
from audit_ingest_sdk._config import ClientConfig
from audit_ingest_sdk._errors import (
    APIStatusError,
    AuditIngestError,
    AuthenticationError,
    PayloadTooLargeError,
    PermissionDeniedError,
    QueueFullError,
    RateLimitedError,
    ServerError,
    ServiceUnavailableError,
    SpoolLockedError,
    TransportError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from audit_ingest_sdk._failures import FailedEvent
from audit_ingest_sdk._models import Action, Actor, AuditEvent, EventInput, Resource, Result
from audit_ingest_sdk._results import Accepted, BatchItem, BatchResult, FieldError
from audit_ingest_sdk._retry import RetryPolicy
from audit_ingest_sdk._spool import SpoolOptions, SpoolStats
from audit_ingest_sdk._spool_store import DeadLetter
from audit_ingest_sdk._spooling_client import SpoolingClient
from audit_ingest_sdk._version import __version__

__all__ = [
    "APIStatusError",
    "Accepted",
    "Action",
    "Actor",
    "AsyncAuditClient",
    "AsyncBatchingClient",
    "AsyncSpoolingClient",
    "AuditClient",
    "AuditEvent",
    "AuditIngestError",
    "AuthenticationError",
    "BatchItem",
    "BatchResult",
    "BatcherOptions",
    "BatcherStats",
    "BatchingClient",
    "ClientConfig",
    "DeadLetter",
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
    "SpoolLockedError",
    "SpoolOptions",
    "SpoolStats",
    "SpoolingClient",
    "TransportError",
    "UnsupportedMediaTypeError",
    "ValidationError",
    "__version__",
]
