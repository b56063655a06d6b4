"""audit_ingest: the library both ingest functions share.

Layers, from pure to I/O:
    domain/     validation, enrichment, records: pure functions over plain data;
                `domain.pipeline` is the per-event pipeline every caller shares
    service     the ingest use case over the `ports` (Publisher, IdempotencyStore)
    keycache    cached key lookups with a revocation bound and stale-if-error
    adapters/   Kafka, PostgreSQL, Redis: the one real implementation of each port
    http/       the edge (`http.edge`: one for every function), routing, parsing,
                problem+json; `http.endpoint.serve` and `http.authorize.serve_authorize`
    bootstrap   the composition root, built lazily on the first request
    settings    the one settings object; nothing else reads the environment
    cli         `audit-ingest`, the operator's command line
"""

from audit_ingest.bootstrap import IngestApp, build_app, get_app
from audit_ingest.domain.principal import Principal
from audit_ingest.errors import (
    AuditError,
    FieldError,
    Forbidden,
    InvalidEvent,
    KeyStoreUnavailable,
    MalformedBody,
    PayloadTooLarge,
    SinkUnavailable,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)
from audit_ingest.http.endpoint import serve
from audit_ingest.http.routes import Endpoint
from audit_ingest.settings import Settings, get_settings

__all__ = [
    "AuditError",
    "Endpoint",
    "FieldError",
    "Forbidden",
    "IngestApp",
    "InvalidEvent",
    "KeyStoreUnavailable",
    "MalformedBody",
    "PayloadTooLarge",
    "Principal",
    "Settings",
    "SinkUnavailable",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedMediaType",
    "build_app",
    "get_app",
    "get_settings",
    "serve",
]
