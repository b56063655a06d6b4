"""The HTTP edge every function shares: what surrounds its route bodies, written once.

For each request, whichever function serves it: the request id (`X-Request-Id`), `/health`
and `/metrics`, the app (built on first use), an `AuditError` as problem+json, anything else
as a logged 500, the request metrics and the access log line. A function (`Edge`) names its
label, its routes, its answers and how its app is built; nothing more.

One policy for the operational paths (`routes.OPERATIONAL`) in every function: probes and
scrapes are not counted in the request metrics (they would drown the request figures), and
`/health` and `/metrics` are not access-logged (`/ready` is: an outage shows there).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from audit_ingest import metrics
from audit_ingest.errors import AuditError, KeyStoreUnavailable, SinkUnavailable
from audit_ingest.http.problem import internal_error_response, json_bytes, problem_response
from audit_ingest.http.routes import OPERATIONAL, Operation
from audit_ingest.logs import log_request
from audit_ingest.settings import Settings

log = logging.getLogger(__name__)
JSON = "application/json"
REQUEST_ID = "X-Request-Id"
DEFAULT_RETRY_AFTER = 2  # seconds; `Settings.retry_after_seconds` once an app was built
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_UNCOUNTED = tuple(OPERATIONAL.values())
_UNLOGGED = (Operation.HEALTH, Operation.METRICS)


_REQUEST_ID_KEY = REQUEST_ID.lower()  # as ASGI (and `request_headers`) name it


def request_id_of(headers: dict[str, str]) -> str:
    """The caller's (or the gateway's) X-Request-Id when it is sane, else a new one.

    :param headers: the request's headers as `request_headers` gives them.
    """
    offered = headers.get(_REQUEST_ID_KEY)
    if offered and _SANE_REQUEST_ID.fullmatch(offered):
        return offered
    return new_request_id()


# A new request id is 32 lowercase hex digits: 64 random bits drawn once per process, then a
# 64-bit counter. Unique across processes (the prefix) and within one (the counter), and about
# a tenth of `uuid4().hex`'s cost (no system call per request). It names a request in logs and
# dead letters; it is not a secret and nothing is authorised by it.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def request_headers(request: Request) -> dict[str, str]:
    """The request's headers as one plain dict (names lower-case, as ASGI gives them).

    Built once per request: a lookup in Starlette's `Headers` scans and re-encodes the list
    each time, and a request reads about ten headers. As there, the first of a repeated header
    wins.
    """
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in reversed(request.scope["headers"])
    }


def json_response(body: object, status: int, headers: dict[str, str]) -> Response:
    return Response(json_bytes(body), status_code=status, headers=headers, media_type=JSON)


class HasSettings(Protocol):
    """What the edge needs of a function's app: its settings (`Retry-After` of a 503)."""

    @property
    def settings(self) -> Settings: ...


AppT = TypeVar("AppT", bound=HasSettings)


@dataclass(slots=True)
class Exchange:
    """One request on its way through a route body.

    `headers` are the response's so far (the request id first; a body adds its own, and they
    go on an error's problem+json too); `fields` go on the access log line (never an API key).
    """

    request: Request
    headers: dict[str, str]
    fields: dict[str, Any] = field(default_factory=dict)
    # The request's headers (`request_headers`), read once by the edge.
    request_headers: dict[str, str] = field(default_factory=dict)

    @property
    def request_id(self) -> str:
        return self.headers[REQUEST_ID]


@dataclass(frozen=True, slots=True)
class Edge(Generic[AppT]):
    """One function's HTTP surface.

    `label` names it in the metrics and the access log; `resolve(method, path)` picks the
    operation (raising `NotFound` or `MethodNotAllowed`); `answer(exchange, operation, app)`
    answers every operation but `/health` and `/metrics`; `build()` gives the process's app.
    """

    label: str
    resolve: Callable[[str, str], Operation]
    answer: Callable[[Exchange, Operation, AppT], Awaitable[Response]]
    build: Callable[[], AppT]

    async def handle(self, request: Request, app: AppT | None = None) -> Response:
        """Answer one request; `app` overrides `build()` (tests pass one)."""
        started = time.perf_counter()
        received = request_headers(request)
        exchange = Exchange(request, {REQUEST_ID: request_id_of(received)}, {}, received)
        path: str = request.scope["path"]
        operation: Operation | None = None
        try:
            operation = self.resolve(request.method, path)
            if operation is Operation.HEALTH:
                response = json_response({"status": "ok"}, 200, exchange.headers)
            elif operation is Operation.METRICS:
                response = Response(
                    generate_latest(), headers=exchange.headers, media_type=CONTENT_TYPE_LATEST
                )
            else:
                if app is None:
                    app = self.build()
                response = await self.answer(exchange, operation, app)
        except AuditError as error:
            if isinstance(error, KeyStoreUnavailable):
                metrics.DEPENDENCY_ERRORS.labels("key_store").inc()
            elif isinstance(error, SinkUnavailable):
                metrics.DEPENDENCY_ERRORS.labels("broker").inc()
            retry_after = (
                app.settings.retry_after_seconds if app is not None else DEFAULT_RETRY_AFTER
            )
            response = problem_response(
                error, instance=path, headers=exchange.headers, retry_after=retry_after
            )
        except Exception:
            # A defect, not a client error: log it with the request id, answer problem+json 500
            # (with X-Request-Id) instead of the framework's bare text.
            log.exception("unhandled error (request %s)", exchange.request_id)
            response = internal_error_response(instance=path, headers=exchange.headers)
        elapsed = time.perf_counter() - started
        status = response.status_code
        if operation not in _UNCOUNTED:  # None (no route) is counted: wrong paths and methods
            requests, seconds = metrics.request_series(self.label, status)
            requests.inc()
            seconds.observe(elapsed)
        if operation not in _UNLOGGED:
            log_request(
                {
                    "request_id": exchange.request_id,
                    "endpoint": self.label,
                    "method": request.method,
                    "path": path[:256],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    **exchange.fields,
                }
            )
        return response
