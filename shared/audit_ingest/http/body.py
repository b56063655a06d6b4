"""Reading a request body without ever holding more than the limit in memory."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from audit_ingest.errors import MalformedBody, PayloadTooLarge


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(limit)
        except ValueError:
            raise MalformedBody("Content-Length is not a number.") from None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise MalformedBody("The client disconnected before sending the whole body.") from None
    return b"".join(chunks)
