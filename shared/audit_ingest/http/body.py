"""Reading a request body without ever holding more than the limit in memory."""

from __future__ import annotations

import zlib

from starlette.requests import ClientDisconnect, Request

from audit_ingest.errors import MalformedBody, PayloadTooLarge, UnsupportedMediaType

ENCODINGS = ("gzip", "identity")


async def read_body(request: Request, limit: int, declared: str | None) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed `limit` bytes.

    :param declared: the request's Content-Length header, None when it has none.
    """
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


def decode_content(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo `Content-Encoding` (gzip or identity) without inflating past `limit` bytes.

    The decompressed size is bounded as it is produced, so a compression bomb costs at most
    `limit` bytes of memory before it is refused with 413.
    """
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding != "gzip":
        raise UnsupportedMediaType(coding, ENCODINGS, header="Content-Encoding")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise MalformedBody("The body is not valid gzip.") from None
    if len(data) > limit:
        raise PayloadTooLarge(limit)
    if not inflater.eof or inflater.unused_data:
        raise MalformedBody("The gzip body is truncated or has trailing data.")
    return data
