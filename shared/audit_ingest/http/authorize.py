"""The `authorize` function: APISIX `forward-auth`'s answer for one request.

APISIX forwards the client's `X-API-Key` here. A 2xx answer's headers listed in the route's
`upstream_headers` go on to the ingest function: the signed principal (`X-Audit-Principal`),
and in plain text the tenant, the key id (the `limit-count` key) and the key's per-minute
quota (the `limit-count` count). A non-2xx answer goes back to the client as it is: the same
problem+json 401/403/503 that inline mode gives.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from audit_ingest import metrics
from audit_ingest.bootstrap import AuthorizeApp, get_authorize_app
from audit_ingest.domain.gateway_token import (
    KEY_ID_HEADER,
    PRINCIPAL_HEADER,
    RATE_LIMIT_HEADER,
    TENANT_HEADER,
    sign_principal,
)
from audit_ingest.errors import AuditError, MethodNotAllowed
from audit_ingest.http.endpoint import request_id_of
from audit_ingest.http.problem import internal_error_response, problem_response
from audit_ingest.logs import log_request

log = logging.getLogger(__name__)
JSON = "application/json"
_OPERATIONAL = ("/health", "/ready", "/metrics")


async def serve_authorize(request: Request, app: AuthorizeApp | None = None) -> Response:
    started = time.perf_counter()
    headers = {"X-Request-Id": request_id_of(request)}
    path = request.url.path.rstrip("/") or "/"
    try:
        if path in _OPERATIONAL and request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(request.method, ("GET", "HEAD"))
        if path == "/health":
            response = _json({"status": "ok"}, 200, headers)
        elif path == "/metrics":
            response = Response(generate_latest(), headers=headers, media_type=CONTENT_TYPE_LATEST)
        else:
            app = app or get_authorize_app()
            if path == "/ready":
                up = await app.key_store.ping(2.0)
                body = {
                    "status": "ready" if up else "not_ready",
                    "checks": {"key_store": "ok" if up else "down"},
                }
                response = _json(body, 200 if up else 503, headers)
            else:
                response = await _authorize(request, app, headers)
    except AuditError as error:
        retry_after = app.settings.retry_after_seconds if app else 2
        response = problem_response(
            error, instance=request.url.path, headers=headers, retry_after=retry_after
        )
    except Exception:
        log.exception("unhandled error (request %s)", headers["X-Request-Id"])
        response = internal_error_response(instance=request.url.path, headers=headers)
    if path not in ("/health", "/metrics"):
        log_request(
            {
                "request_id": headers["X-Request-Id"],
                "endpoint": "authorize",
                "method": request.method,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "tenant_id": response.headers.get(TENANT_HEADER),
                "api_key_id": response.headers.get(KEY_ID_HEADER),
            }
        )
    metrics.REQUESTS.labels("authorize", str(response.status_code)).inc()
    metrics.REQUEST_SECONDS.labels("authorize", str(response.status_code)).observe(
        time.perf_counter() - started
    )
    return response


async def _authorize(request: Request, app: AuthorizeApp, headers: dict[str, str]) -> Response:
    now = datetime.now(UTC)
    principal = await app.authenticator.authenticate(request.headers, now)
    token = sign_principal(
        principal,
        secret=app.secret,
        now=int(now.timestamp()),
        ttl=app.settings.gateway_principal_ttl_seconds,
    )
    headers.update(
        {
            PRINCIPAL_HEADER: token,
            TENANT_HEADER: principal.tenant_id,
            KEY_ID_HEADER: principal.api_key_id,
            RATE_LIMIT_HEADER: str(principal.rate_limit),
        }
    )
    body = {"tenant_id": principal.tenant_id, "api_key_id": principal.api_key_id}
    return _json(body, 200, headers)


def _json(body: object, status: int, headers: dict[str, str]) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=JSON)
