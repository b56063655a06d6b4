"""B0f, the framework floor: the functions' server stack, a handler that only answers 202."""

from functions_framework import aio
from starlette.requests import Request
from starlette.responses import Response


@aio.http
async def noop(request: Request) -> Response:
    return Response(status_code=202)
