"""Knative function `ingest-batch`: POST /v1/events/batch, 1 to 1000 audit events per request."""

from functions_framework import aio
from starlette.requests import Request
from starlette.responses import Response

from audit_ingest.http.endpoint import serve
from audit_ingest.http.routes import Endpoint


@aio.http
async def ingest_batch(request: Request) -> Response:
    return await serve(request, Endpoint.BATCH)
