"""HTTP to the function processes and records back from Kafka, for the e2e tests."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.stack import TopicReader


def post(
    url: str, body: Any, key: str | None, content_type: str = "application/json", **headers: str
) -> httpx.Response:
    all_headers = {"content-type": content_type, **headers}
    if key is not None:
        all_headers["x-api-key"] = key
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(url, content=content, headers=all_headers, timeout=20)


def marked(messages: list[Any], key: bytes, marker: str) -> list[Any]:
    """The records of `messages` with Kafka key `key` whose event's context has `marker`."""
    return [
        m
        for m in messages
        if m.key() == key and orjson.loads(m.value()).get("context", {}).get("marker") == marker
    ]


def find(reader: TopicReader, key: bytes, count: int) -> list[Any]:
    messages = reader.read_until(lambda seen: sum(m.key() == key for m in seen) >= count)
    return [m for m in messages if m.key() == key]
