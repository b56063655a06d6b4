"""A function process under SIGTERM: in-flight requests answered, producer flushed, exit 0."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.conftest import start_function, stop_function
from tests.stack import KeyFactory
from tests.unit.test_validation import seed_event

pytestmark = pytest.mark.e2e


def test_sigterm_drains_and_exits_zero(
    function_env: dict[str, str], log_dir: Path, issue_key: KeyFactory
) -> None:
    function = start_function("ingest_event", {**function_env, "K_SERVICE": "sigterm"}, log_dir)
    key = issue_key().secret
    statuses: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=20) as client:
            while not stop.is_set():
                try:
                    response = client.post(
                        f"{function.url}/v1/events",
                        content=orjson.dumps(seed_event()),
                        headers={"content-type": "application/json", "x-api-key": key},
                    )
                    statuses.append(response.status_code)
                except httpx.ConnectError:  # refused: the listener closed; nothing was sent
                    return
                except httpx.TransportError as exc:  # sent, but never answered: a defect
                    errors.append(repr(exc))
                    return

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    while len(statuses) < 50:
        threading.Event().wait(0.01)
    code = stop_function(function)
    stop.set()
    for worker in workers:
        worker.join(30)
    assert code == 0, function.output()
    assert statuses and set(statuses) == {202}, set(statuses)
    assert errors == [], errors
    assert "undelivered" not in function.output()
