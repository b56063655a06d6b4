"""Prometheus metrics of the ingest path (names follow the Prometheus naming conventions).

Labels take values from small fixed sets only (endpoint, outcome, status), never from input.
"""

from __future__ import annotations

import functools

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "audit_ingest_requests_total",
    "HTTP requests answered, by endpoint and status code.",
    ["endpoint", "status"],
)
REQUEST_SECONDS = Histogram(
    "audit_ingest_request_duration_seconds",
    "Time from request start to response, by endpoint and status code.",
    ["endpoint", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
EVENTS = Counter(
    "audit_ingest_events_total",
    "Events by outcome: accepted (acknowledged by the broker), rejected (invalid), "
    "failed (not acknowledged).",
    ["endpoint", "outcome"],
)
KEY_CACHE = Counter(
    "audit_ingest_key_cache_lookups_total",
    "API key lookups by result of the in-process cache: hit, miss, or stale (served past "
    "its TTL while the key store is down).",
    ["result"],
)
RATE_LIMIT_DECISIONS = Counter(
    "audit_ingest_rate_limit_decisions_total",
    "Rate-limit decisions in inline mode, by result (allowed or limited).",
    ["result"],
)
RATE_LIMIT_FAIL_OPEN = Counter(
    "audit_ingest_rate_limit_fail_open_total",
    "Requests counted locally because Redis failed or was slow (the limiter failed open).",
)
IDEMPOTENCY = Counter(
    "audit_ingest_idempotency_total",
    "Idempotency outcomes other than a first attempt: duplicate (answered from the record), "
    "conflict (key reused for another event), in_progress, resumed (written again under the "
    "event_id of an attempt that failed or whose function died), unavailable (store down).",
    ["result"],
)
LATE_DELIVERIES = Counter(
    "audit_ingest_late_deliveries_total",
    "Records still held by the producer when their request answered 503, by how they ended: "
    "acknowledged (stored after all; a retry gets their event_id) or failed.",
    ["outcome"],
)
KAFKA_DELIVERY_SECONDS = Histogram(
    "audit_ingest_kafka_delivery_seconds",
    "Time from producing a request's records to the broker's last acknowledgement.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_EVENTS = Histogram(
    "audit_ingest_batch_events",
    "Events per batch request.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
)
DLQ_RECORDS = Counter(
    "audit_ingest_dlq_records_total",
    "Records sent to the dead-letter topic, by reason (validation_failed, produce_failed).",
    ["reason"],
)
DEPENDENCY_ERRORS = Counter(
    "audit_ingest_dependency_errors_total",
    "Requests answered 503 because a dependency failed, by dependency (key_store, broker).",
    ["dependency"],
)


# The series a request touches, bound once: `labels()` takes a lock and builds a key on every
# call, several times per request on the hot path. Label values are from small fixed sets
# (endpoint labels, outcomes, the status codes we answer), so the caches stay small.


@functools.cache
def request_series(endpoint: str, status: int) -> tuple[Counter, Histogram]:
    """`REQUESTS` and `REQUEST_SECONDS` of one endpoint and status code."""
    code = str(status)
    return REQUESTS.labels(endpoint, code), REQUEST_SECONDS.labels(endpoint, code)


@functools.cache
def events_series(endpoint: str, outcome: str) -> Counter:
    """`EVENTS` of one endpoint and outcome (accepted, rejected, failed)."""
    return EVENTS.labels(endpoint, outcome)


@functools.cache
def key_cache_series(result: str) -> Counter:
    """`KEY_CACHE` of one result (hit, miss, stale)."""
    return KEY_CACHE.labels(result)


@functools.cache
def rate_limit_series(result: str) -> Counter:
    """`RATE_LIMIT_DECISIONS` of one result (allowed, limited)."""
    return RATE_LIMIT_DECISIONS.labels(result)
