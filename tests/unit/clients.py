"""An in-process HTTP client for unit tests: any request handler, served by Starlette."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def app_client(handler: object) -> httpx.AsyncClient:
    """A client whose every GET and POST, on any path, is answered by `handler(request)`."""

    async def endpoint(request: Request) -> Response:
        return await handler(request)  # type: ignore[operator, no-any-return]

    asgi = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://t")
