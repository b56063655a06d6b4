"""docs/api.md says what openapi.yaml says: every operation, status code, field error code and
problem type of the contract is in the guide, and every status, code and problem type the
guide's tables and lists name is in the contract. Its CloudEvents example runs as written."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from audit_ingest.bootstrap import build_app
from audit_ingest.domain.keys import format_key, hash_key
from audit_ingest.http.endpoint import serve
from audit_ingest.http.routes import Endpoint
from audit_ingest.settings import Settings
from tests.unit.clients import app_client
from tests.unit.fakes import FakeIdempotencyStore, FakeKeyStore, FakeLimiter, FakePublisher
from tests.unit.samples import stored

ROOT = Path(__file__).resolve().parents[2]
SPEC: dict[str, Any] = yaml.safe_load((ROOT / "openapi.yaml").read_text())
GUIDE = (ROOT / "docs" / "api.md").read_text()
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PROBLEM = "urn:audit-ingest:problem:"


def operations() -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in SPEC["paths"].items()
        for method in METHODS
        if method in item
    ]


def walk(node: object) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def declared_statuses() -> set[int]:
    """Statuses of the operations, and those the problem schemas pin (404 and 405 are
    declared for any path or method, not per operation)."""
    found = {
        int(code)
        for path, item in SPEC["paths"].items()
        for method in METHODS
        if method in item
        for code in item[method]["responses"]
        if code.isdigit()
    }
    for node in walk(SPEC["components"]["schemas"]):
        status = node.get("status")
        if isinstance(status, dict) and isinstance(status.get("const"), int):
            found.add(status["const"])
    return found


def field_error_codes() -> list[str]:
    codes = SPEC["components"]["schemas"]["FieldError"]["properties"]["code"]["enum"]
    assert isinstance(codes, list) and codes
    return [str(code) for code in codes]


def problem_types() -> set[str]:
    found: set[str] = set()
    for node in walk(SPEC):
        kind = node.get("type")
        if isinstance(kind, dict):
            values = [kind.get("const"), *kind.get("enum", [])]
            found |= {v.removeprefix(PROBLEM) for v in values if str(v).startswith(PROBLEM)}
    return found


def in_backticks(text: str) -> set[str]:
    """Inline code spans (fenced blocks left out)."""
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return set(re.findall(r"`([^`\n]+)`", prose))


def tables(markdown: str) -> Iterator[list[list[str]]]:
    """Each markdown table as rows of cells (header first, separator dropped)."""
    rows: list[list[str]] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
                rows.append(cells)
        elif rows:
            yield rows
            rows = []


def status_tables() -> list[list[list[str]]]:
    found = [table for table in tables(GUIDE) if table[0][0].lower() == "status"]
    assert found, "docs/api.md has no table whose first column is `status`"
    return found


def guide_field_codes() -> set[str]:
    match = re.search(r"Field error codes:(.*?)(?:\n\n|$)", GUIDE, re.DOTALL)
    assert match, "docs/api.md lists no 'Field error codes:'"
    return in_backticks(match.group(1))


@pytest.mark.parametrize(("method", "path"), operations())
def test_every_operation_is_in_the_guide(method: str, path: str) -> None:
    assert f"`{method} {path}`" in GUIDE


@pytest.mark.parametrize("status", sorted(declared_statuses()))
def test_every_status_is_in_the_guide(status: int) -> None:
    assert re.search(rf"(?<![\d.]){status}(?![\d.])", GUIDE), f"{status} is not in docs/api.md"


@pytest.mark.parametrize("code", field_error_codes())
def test_every_field_error_code_is_in_the_guide(code: str) -> None:
    assert code in guide_field_codes(), f"`{code}` is missing from the guide's error codes"


@pytest.mark.parametrize("problem", sorted(problem_types()))
def test_every_problem_type_is_in_the_guide(problem: str) -> None:
    assert problem in in_backticks(GUIDE), f"problem type `{problem}` is not in docs/api.md"


def test_statuses_in_the_guide_tables_are_in_the_contract() -> None:
    declared = declared_statuses()
    for table in status_tables():
        for row in table[1:]:
            for status in re.findall(r"\d{3}", row[0]):
                assert int(status) in declared, f"docs/api.md table row {row} is not declared"


def test_field_error_codes_in_the_guide_are_in_the_contract() -> None:
    assert guide_field_codes() <= set(field_error_codes()), guide_field_codes() - set(
        field_error_codes()
    )


def test_problem_types_in_the_errors_table_are_in_the_contract() -> None:
    (errors,) = [table for table in status_tables() if "problem type" in table[0]]
    column = errors[0].index("problem type")
    named = {name for row in errors[1:] for name in in_backticks(row[column])}
    assert named == problem_types()
    # And each problem type sits on a row of the status its schema pins.
    for row in errors[1:]:
        statuses = {int(status) for status in re.findall(r"\d{3}", row[0])}
        for name in in_backticks(row[column]):
            assert pinned_status(name) in statuses, (name, row)


def pinned_status(problem: str) -> int | None:
    for node in walk(SPEC["components"]["schemas"]):
        for part in node.get("allOf", []):
            properties = part.get("properties", {})
            kind, status = properties.get("type", {}), properties.get("status", {})
            values = [kind.get("const"), *kind.get("enum", [])]
            if f"{PROBLEM}{problem}" in values and "const" in status:
                return int(status["const"])
    return None


def cloudevents_examples() -> tuple[str, str]:
    """The guide's two CloudEvents examples: the 2.x API, then the 1.x API."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE, flags=re.DOTALL)
    v2, v1 = [block for block in blocks if "from cloudevents" in block]
    return v2, v1


def cloudevents_program() -> str:
    """The 1.x example as a program: after the 2.x example's settings (its imports of
    `cloudevents.core` left out), as the guide presents it."""
    v2, v1 = cloudevents_examples()
    preamble = v2.split("\nfor ")[0].splitlines()
    kept = [line for line in preamble if not line.startswith("from cloudevents")]
    return "\n".join(kept) + "\n" + v1


async def test_the_cloudevents_1x_example_is_stored_in_both_modes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The guide's 1.x example, run as written against the in-process function with the
    project's cloudevents (1.x: functions-framework pins it). Both examples were also run
    against real functions with cloudevents 2.x and 1.x from PyPI (the guide says which)."""
    key = format_key(b"\x0d" * 32)
    publisher = FakePublisher()
    app = build_app(
        Settings(),
        publisher=publisher,
        key_store=FakeKeyStore({hash_key(key): stored(tenant_id="t1")}),
        limiter=FakeLimiter(),
        idempotency=FakeIdempotencyStore(),
    )
    loop = asyncio.get_running_loop()
    printed: list[tuple[object, ...]] = []
    async with app_client(lambda request: serve(request, Endpoint.SINGLE, app)) as client:

        def post(url: str, **options: Any) -> httpx.Response:  # the example's httpx.post
            return asyncio.run_coroutine_threadsafe(client.post(url, **options), loop).result()

        monkeypatch.setattr(httpx, "post", post)
        monkeypatch.setenv("AUDIT_INGEST_API_KEY", key)
        monkeypatch.delenv("AUDIT_INGEST_URL", raising=False)
        program = compile(cloudevents_program(), "docs/api.md", "exec")
        namespace = {"print": lambda *args: printed.append(args)}
        await asyncio.to_thread(exec, program, namespace)
    assert [(name, status) for name, status, _ in printed] == [
        ("to_binary", 202),
        ("to_structured", 202),
    ]
    assert len(publisher.published) == 2
    for record in publisher.published:
        value = json.loads(record.value)
        assert value["cloudevent"]["source"] == "/crm"
        assert value["cloudevent"]["type"] == "com.example.user.created"
        assert value["actor"] == {"id": "user-123", "type": "user"}
