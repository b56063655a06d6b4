"""Knative function `authorize`: APISIX forward-auth, API key -> signed principal."""

from functions_framework import aio
from starlette.requests import Request
from starlette.responses import Response

from audit_ingest.http.authorize import serve_authorize


@aio.http
async def authorize(request: Request) -> Response:
    return await serve_authorize(request)
