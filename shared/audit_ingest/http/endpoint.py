"""The ingest functions' route bodies: authenticate, read, parse, ingest, answer; and `/ready`.

The edge around them (request id, errors, metrics, access log) is `http.edge`'s; this module
names, per endpoint, what the function answers. `functions/<name>/main.py` only names the
endpoint.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial

from starlette.requests import Request
from starlette.responses import Response

from audit_ingest import metrics
from audit_ingest.bootstrap import IngestApp, get_app
from audit_ingest.domain.enrichment import RequestContext
from audit_ingest.domain.model import MAX_IDEMPOTENCY_KEY_LENGTH
from audit_ingest.domain.ratelimit import rate_headers
from audit_ingest.errors import MalformedBody, RateLimited, SinkUnavailable, UnsupportedMediaType
from audit_ingest.http.body import decode_content, read_body
from audit_ingest.http.edge import JSON, Edge, Exchange, json_response
from audit_ingest.http.parsing import (
    BATCH_MEDIA_TYPES,
    SINGLE_MEDIA_TYPES,
    is_binary_cloudevent,
    media_type,
    parse_batch,
    parse_single,
)
from audit_ingest.http.responses import batch_body, single_body
from audit_ingest.http.routes import Endpoint, Operation, resolve
from audit_ingest.service import SINK_CODES, Rejected


async def serve(request: Request, endpoint: Endpoint, app: IngestApp | None = None) -> Response:
    """Answer one request to the function serving `endpoint`."""
    return await _EDGES[endpoint].handle(request, app)


async def _answer(
    exchange: Exchange, operation: Operation, app: IngestApp, *, endpoint: Endpoint
) -> Response:
    if operation is Operation.READY:
        return await _ready(app, exchange.headers)
    return await _ingest(exchange, endpoint, app)


async def _ingest(exchange: Exchange, endpoint: Endpoint, app: IngestApp) -> Response:
    request, headers, fields = exchange.request, exchange.headers, exchange.fields
    received = exchange.request_headers
    started = time.monotonic()  # the request's deadline runs from here (see IngestService)
    received_at = datetime.now(UTC)
    principal = await app.authenticator.authenticate(received, received_at)
    fields["tenant_id"] = principal.tenant_id
    fields["api_key_id"] = principal.api_key_id
    if app.limiter is not None:
        decision = await app.limiter.hit(principal.api_key_id, principal.rate_limit)
        # Every answer to an authenticated request reports the quota, errors included.
        headers.update(rate_headers(decision))
        if not decision.allowed:
            raise RateLimited(decision.limit, decision.reset_seconds)
    batch = endpoint is Endpoint.BATCH
    request_key = None if batch else _idempotency_header(received)
    _check_media_type(received, BATCH_MEDIA_TYPES if batch else SINGLE_MEDIA_TYPES)
    limits = app.limits
    limit = limits.max_batch_body_bytes if batch else limits.max_event_bytes
    body = decode_content(
        await read_body(request, limit, received.get("content-length")),
        received.get("content-encoding"),
        limit,
    )
    envelopes = (
        parse_batch(received, body, max_events=limits.max_batch_events)
        if batch
        else [parse_single(received, body)]
    )
    fields["events"] = len(envelopes)
    if batch:
        metrics.BATCH_EVENTS.observe(len(envelopes))
    context = RequestContext(
        request_id=exchange.request_id,
        received_at=received_at,
        client_ip=_client_ip(request, received, app.settings.client_ip_header),
        user_agent=received.get("user-agent"),
    )
    label = endpoint.name.lower()
    try:
        outcomes = await app.service.ingest(
            envelopes,
            principal,
            context,
            request_idempotency_key=request_key,
            started=started,
        )
    except SinkUnavailable:
        metrics.events_series(label, "failed").inc(len(envelopes))
        raise
    # One metric update per outcome kind, not per event (a batch holds up to 1000); only the
    # refusals need a look each (the usual batch has none).
    refused = Counter(
        _refusal_label(outcome) for outcome in outcomes if isinstance(outcome, Rejected)
    )
    accepted = len(outcomes) - refused.total()
    if accepted:
        metrics.events_series(label, "accepted").inc(accepted)
    for kind, count in refused.items():
        metrics.events_series(label, kind).inc(count)
    fields["accepted"] = accepted
    fields["rejected"] = len(outcomes) - accepted
    stamp = context.received_text
    body_out = batch_body(outcomes, stamp) if batch else single_body(outcomes[0], stamp)
    return json_response(body_out, 202, headers)


def _refusal_label(outcome: Rejected) -> str:
    return "failed" if any(e.code in SINK_CODES for e in outcome.errors) else "rejected"


def _idempotency_header(received: Mapping[str, str]) -> str | None:
    value = received.get("idempotency-key")
    if value is not None and not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise MalformedBody(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters.",
            field="Idempotency-Key",
        )
    return value


def _check_media_type(received: Mapping[str, str], accepted: tuple[str, ...]) -> None:
    kind = media_type(received.get("content-type"))
    if is_binary_cloudevent(received):
        accepted = (JSON, "")
    if kind not in accepted:
        raise UnsupportedMediaType(kind, tuple(a for a in accepted if a))


async def _ready(app: IngestApp, headers: dict[str, str]) -> Response:
    if app.draining.is_set():
        return json_response({"status": "draining"}, 503, headers)
    timeout = 2.0
    checks = {"broker": await app.publisher.ping(timeout)}
    if app.key_store is not None:  # gateway mode needs no key store: the gateway resolved it
        checks["key_store"] = await app.key_store.ping(timeout)
    ready = all(checks.values())
    body = {
        "status": "ready" if ready else "not_ready",
        "checks": {name: "ok" if up else "down" for name, up in checks.items()},
    }
    return json_response(body, 200 if ready else 503, headers)


def _client_ip(request: Request, received: Mapping[str, str], header: str | None) -> str | None:
    if header:
        value = received.get(header.lower())
        return value.strip()[:64] if value else None
    return request.client.host if request.client else None


_EDGES = {
    endpoint: Edge(
        endpoint.name.lower(),
        partial(resolve, endpoint=endpoint),
        partial(_answer, endpoint=endpoint),
        get_app,
    )
    for endpoint in Endpoint
}
