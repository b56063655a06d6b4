"""Both functions behind one local port: the local stand-in for the gateway's routing.

Each function is loaded exactly as production loads it (`serve.asgi_app`: functions-framework's
own ASGI factory on `functions/<name>/main.py`, its requests handed to the function directly);
this module only routes by path, as APISIX does: `/v1/events/batch` to ingest-batch;
`/v1/events`, `/` (Knative Eventing's delivery path) and the operational paths (`/health`,
`/ready`, `/metrics`) to ingest-event. Any other path gets this composition's own 404, naming
both ingest paths: a function's 404 names only its own.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

import uvicorn
from starlette.requests import Request

from audit_ingest.errors import NotFound
from audit_ingest.http.edge import Edge, Exchange
from audit_ingest.http.routes import OPERATIONAL, Endpoint, Operation
from audit_ingest.serve import asgi_app
from audit_ingest.settings import get_settings

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
BATCH_PATH = Endpoint.BATCH.value
SINGLE_PATHS = frozenset({Endpoint.SINGLE.value, "/", *OPERATIONAL})

Scope = dict[str, Any]


def _not_found(_method: str, path: str) -> Operation:
    raise NotFound(
        f"No operation at {path}; this local stack serves POST {Endpoint.SINGLE.value} and "
        f"POST {BATCH_PATH} (and GET {', '.join(OPERATIONAL)})."
    )


def _never(_exchange: Exchange, _operation: Operation, _app: Any) -> NoReturn:
    raise AssertionError("the composition's own edge only answers 404")


def _no_app() -> NoReturn:
    raise AssertionError("the composition's own edge builds no app")


# An edge of its own (request id, problem+json, metrics, access log) that answers every
# request 404; labelled `single`, as ingest-event counted and logged these before.
NOT_FOUND: Edge[Any] = Edge("single", _not_found, _never, _no_app)


def route(path: str) -> str:
    """`batch`, `single` or `none`: which function answers `path` (a trailing / ignored)."""
    path = path.rstrip("/") or "/"
    if path == BATCH_PATH:
        return "batch"
    return "single" if path in SINGLE_PATHS else "none"


def build() -> Any:
    """The composed ASGI app."""
    single = asgi_app("ingest_event", str(FUNCTIONS / "ingest_event" / "main.py"))
    batch = asgi_app("ingest_batch", str(FUNCTIONS / "ingest_batch" / "main.py"))

    async def not_found(scope: Scope, receive: Any, send: Any) -> None:
        response = await NOT_FOUND.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await single(scope, receive, send)
            return
        target = {"batch": batch, "single": single, "none": not_found}[
            route(str(scope.get("path", "")))
        ]
        await target(scope, receive, send)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    uvicorn.run(
        build(),
        host=args.host,
        port=args.port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=30,
        # As the image's server (audit_ingest.serve): a proxy's pool closes idle connections first.
        timeout_keep_alive=get_settings().http_keepalive_seconds,
    )


if __name__ == "__main__":
    main()
