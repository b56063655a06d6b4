"""Request body templates for the generator: one event, a batch of 100, a batch of 1000.

`__SEQ__` is replaced by the generator with a number unique to each request, so every event
of every request differs (actor, resource and context ids), and none carries an idempotency
key: nothing is de-duplicated, every event is validated, enriched and produced.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

SIZES = {"single": 1, "batch100": 100, "batch1000": 1000}
PLACEHOLDER = "__SEQ__"


def event(index: int) -> dict[str, Any]:
    """A typical audit event (about 400 bytes): every structured block, a small context."""
    return {
        "actor": {
            "id": f"user-__SEQ__-{index}",
            "type": "user",
            "name": "Ada Lovelace",
            "email": "ada@example.com",
        },
        "action": {"name": "document.Updated"},
        "resource": {"type": "document", "id": f"doc-__SEQ__-{index}", "name": "Q3 plan"},
        "timestamp": "2026-01-05T10:00:00.250Z",
        "result": {"success": True, "code": "ok"},
        "context": {"ip": "203.0.113.7", "session": "s-__SEQ__", "fields": ["title", "owner"]},
        "metadata": {"source": "bench", "attempt": 1},
    }


def template(name: str, *, keyed: bool = False) -> bytes:
    """The body template `name` (a key of SIZES), `__SEQ__` still in it.

    `keyed`: a batch's events carry their own `idempotency_key` (the idempotency path's cost;
    a single event's key is the `Idempotency-Key` header, which the driver sets).
    """
    size = SIZES[name]
    events = [event(i) for i in range(size)]
    if keyed:
        for index, item in enumerate(events):
            item["idempotency_key"] = f"bench-__SEQ__-{index}"
    body: object = events[0] if size == 1 else {"events": events}
    return orjson.dumps(body)


def write(folder: Path) -> dict[str, Path]:
    """Write the three templates under `folder`; name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in SIZES:
        path = folder / f"{name}.json"
        path.write_bytes(template(name))
        paths[name] = path
    return paths


TRANSPORTS = ("json", "gzip", "ce-structured", "ce-binary")
_CE_SOURCE = "/bench/inproc"
_CE_TYPE = "com.example.audit.recorded"


def encode(
    body: bytes, name: str, transport: str, seq: int | str
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """One request body (a filled template) sent over `transport`: the body and its headers.

    - `json`: as is, `application/json`;
    - `gzip`: the same, gzip-compressed (`Content-Encoding: gzip`);
    - `ce-structured`: each event as the `data` of a structured CloudEvent (a batch: a
      `application/cloudevents-batch+json` array of them);
    - `ce-binary` (single events only): the event as the body, its attributes as `ce-*`
      headers.

    CloudEvent ids are `seq` and the event's position, so every event of every request is a
    new occurrence (the CloudEvent's source + id is also a retry key).
    """
    if transport == "json":
        return body, [(b"content-type", b"application/json")]
    if transport == "gzip":
        return gzip.compress(body, compresslevel=6), [
            (b"content-type", b"application/json"),
            (b"content-encoding", b"gzip"),
        ]
    events: list[Any] = [orjson.loads(body)] if name == "single" else orjson.loads(body)["events"]
    if transport == "ce-binary":
        if name != "single":
            raise ValueError("a binary-mode CloudEvent carries one event: use --body single")
        return body, [
            (b"content-type", b"application/json"),
            (b"ce-specversion", b"1.0"),
            (b"ce-id", f"{seq}-0".encode()),
            (b"ce-source", _CE_SOURCE.encode()),
            (b"ce-type", _CE_TYPE.encode()),
        ]
    if transport == "ce-structured":
        envelopes = [
            {
                "specversion": "1.0",
                "id": f"{seq}-{index}",
                "source": _CE_SOURCE,
                "type": _CE_TYPE,
                "datacontenttype": "application/json",
                "data": event,
            }
            for index, event in enumerate(events)
        ]
        if name == "single":
            return orjson.dumps(envelopes[0]), [(b"content-type", b"application/cloudevents+json")]
        return orjson.dumps(envelopes), [(b"content-type", b"application/cloudevents-batch+json")]
    raise ValueError(f"unknown transport {transport!r}; one of {', '.join(TRANSPORTS)}")


@dataclass(frozen=True)
class GeneratorRequest:
    """What the Go generator sends for one (body, transport, keyed) path.

    `body` and the `headers`' values still carry `__SEQ__`, which the generator fills per
    request (so every CloudEvent id and `Idempotency-Key` is new); with `gzip` the generator
    compresses each filled body (compressing the template would hide `__SEQ__`).
    """

    body: bytes
    headers: dict[str, str]
    gzip: bool = False


def generator_request(
    name: str, transport: str = "json", *, keyed: bool = False
) -> GeneratorRequest:
    """The generator's template for `name` (a key of SIZES) over `transport`.

    `keyed`: a retry identity on every event: a batch's events their own `idempotency_key`,
    a single event the request's `Idempotency-Key` header.
    """
    filled = template(name, keyed=keyed and name != "single")
    if transport == "gzip":
        body, pairs = filled, encode(filled, name, transport, PLACEHOLDER)[1]
    else:
        body, pairs = encode(filled, name, transport, PLACEHOLDER)
    headers = {key.decode(): value.decode() for key, value in pairs}
    if keyed and name == "single":
        headers["idempotency-key"] = f"bench-{PLACEHOLDER}"
    return GeneratorRequest(body, headers, gzip=transport == "gzip")
