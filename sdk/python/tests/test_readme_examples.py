"""The README's batch example runs as written, on both ways a batch is answered."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from mock_server import MockServer, field_error, make_event, problem

from audit_ingest_sdk import AuditClient, ValidationError

README = Path(__file__).resolve().parents[1] / "README.md"


def batch_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (block,) = [block for block in blocks if "exc.batch_result" in block]
    return str(block)


def run_example(client: AuditClient) -> list[tuple[Any, ...]]:
    printed: list[tuple[Any, ...]] = []
    namespace = {
        "client": client,
        "event1": make_event(1),
        "event2": make_event(2),
        "event3": make_event(3),
        "print": lambda *args: printed.append(args),
    }
    exec(compile(batch_example(), str(README), "exec"), namespace)  # noqa: S102
    return printed


def test_an_all_invalid_batch_goes_through_the_same_loop(
    client: AuditClient, server: MockServer
) -> None:
    server.answer(
        problem(400, errors=[field_error(f"events[{i}].actor.id", "type") for i in range(3)])
    )
    printed = run_example(client)
    keys = server.batch_keys()[0]
    assert printed == [(0, 3)] + [(i, keys[i], [("actor.id", "type")]) for i in range(3)]


def test_a_mixed_batch_and_a_duplicate(client: AuditClient, server: MockServer) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        body = server.accept(request, {1: [field_error("resource")]}).json()
        body["events"][2]["duplicate"] = True
        return httpx.Response(202, json=body)

    server.answer(answer)
    printed = run_example(client)
    keys = server.batch_keys()[0]
    assert printed[:2] == [(2, 1), (1, keys[1], [("resource", "required")])]
    (duplicate,) = printed[2:]
    assert duplicate[:2] == (2, "already stored as")


def test_a_refused_body_is_raised(client: AuditClient, server: MockServer) -> None:
    server.answer(problem(400, errors=[field_error("", "malformed_body")]))
    with pytest.raises(ValidationError) as raised:
        run_example(client)
    assert raised.value.batch_result is None
