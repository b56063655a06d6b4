"""Both functions behind one local port: the local stand-in for the gateway's routing.

Each function is loaded exactly as production loads it, by functions-framework's own ASGI
factory from `functions/<name>/main.py`; this module only routes by path, as APISIX does:
`/v1/events/batch` to ingest-batch, everything else (`/v1/events`, `/health`, `/ready`,
`/metrics`) to ingest-event.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import uvicorn
from functions_framework.aio import create_asgi_app

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
BATCH_PATH = "/v1/events/batch"

Scope = dict[str, Any]


def build() -> Any:
    """The composed ASGI app."""
    # functions-framework ships no type hints for its factory.
    single = create_asgi_app(  # type: ignore[no-untyped-call]
        "ingest_event", str(FUNCTIONS / "ingest_event" / "main.py"), "http"
    )
    batch = create_asgi_app(  # type: ignore[no-untyped-call]
        "ingest_batch", str(FUNCTIONS / "ingest_batch" / "main.py"), "http"
    )

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        path = str(scope.get("path", "")).rstrip("/")
        target = batch if scope["type"] == "http" and path == BATCH_PATH else single
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
    )


if __name__ == "__main__":
    main()
