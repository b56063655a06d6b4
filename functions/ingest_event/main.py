"""Knative function `ingest-event`: POST /v1/events, one audit event per request."""

from functions_framework import aio
from starlette.requests import Request
from starlette.responses import Response

from audit_ingest.http.endpoint import serve
from audit_ingest.http.routes import Endpoint


@aio.http
async def ingest_event(request: Request) -> Response:
    return await serve(request, Endpoint.SINGLE)
