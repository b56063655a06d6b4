"""The JSON log line's own fields: `time` in RFC 3339, UTC, whatever the process's TZ."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import orjson
import pytest

from audit_ingest.logs import json_formatter

pytestmark = pytest.mark.unit

CREATED = 1733392800.25  # 2024-12-05T10:00:00.250Z


@pytest.fixture(params=["UTC", "America/Sao_Paulo", "Asia/Kolkata"])
def local_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        yield request.param
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


def _line(**extra: object) -> dict[str, object]:
    record = logging.LogRecord("audit_ingest.access", logging.INFO, "", 1, "request", (), None)
    record.created, record.msecs = CREATED, 250.0
    record.__dict__.update(extra)
    return dict(orjson.loads(json_formatter().format(record)))


def test_time_is_rfc3339_utc_in_any_local_zone(local_zone: str) -> None:
    line = _line(request_id="r1", status=202)
    assert line["time"] == "2024-12-05T10:00:00.250Z"
    assert (line["level"], line["logger"], line["message"]) == (
        "INFO",
        "audit_ingest.access",
        "request",
    )
    assert (line["request_id"], line["status"]) == ("r1", 202)
