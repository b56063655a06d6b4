"""The `authorize` function: APISIX `forward-auth`'s answer for one request.

APISIX forwards the client's `X-API-Key` here. A 2xx answer's headers listed in the route's
`upstream_headers` go on to the ingest function: the signed principal (`X-Audit-Principal`),
and in plain text the tenant, the key id (the `limit-count` key) and the key's per-minute
quota (the `limit-count` count). A non-2xx answer goes back to the client as it is: the same
problem+json 401/403/503 that inline mode gives.

The edge around the check (request id, errors, metrics, access log) is `http.edge`'s, the same
as the ingest functions'.
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from audit_ingest.bootstrap import AuthorizeApp, get_authorize_app
from audit_ingest.domain.gateway_token import (
    KEY_ID_HEADER,
    PRINCIPAL_HEADER,
    RATE_LIMIT_HEADER,
    TENANT_HEADER,
)
from audit_ingest.http.edge import Edge, Exchange, json_response
from audit_ingest.http.routes import Operation, resolve_authorize


async def serve_authorize(request: Request, app: AuthorizeApp | None = None) -> Response:
    """Answer one request to the `authorize` function."""
    return await _EDGE.handle(request, app)


async def _answer(exchange: Exchange, operation: Operation, app: AuthorizeApp) -> Response:
    if operation is Operation.READY:
        up = await app.key_store.ping(2.0)
        body = {
            "status": "ready" if up else "not_ready",
            "checks": {"key_store": "ok" if up else "down"},
        }
        return json_response(body, 200 if up else 503, exchange.headers)
    return await _authorize(exchange, app)


async def _authorize(exchange: Exchange, app: AuthorizeApp) -> Response:
    now = datetime.now(UTC)
    principal = await app.authenticator.authenticate(exchange.request_headers, now)
    exchange.fields["tenant_id"] = principal.tenant_id
    exchange.fields["api_key_id"] = principal.api_key_id
    token = app.signer.token(principal, int(now.timestamp()))
    exchange.headers.update(
        {
            PRINCIPAL_HEADER: token,
            TENANT_HEADER: principal.tenant_id,
            KEY_ID_HEADER: principal.api_key_id,
            RATE_LIMIT_HEADER: str(principal.rate_limit),
        }
    )
    body = {"tenant_id": principal.tenant_id, "api_key_id": principal.api_key_id}
    return json_response(body, 200, exchange.headers)


_EDGE = Edge("authorize", resolve_authorize, _answer, get_authorize_app)
