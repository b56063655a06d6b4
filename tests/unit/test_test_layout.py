"""The test suites' own layout: no module imports from a test module or a conftest.

A helper two test modules share lives in a helpers module (tests/unit/samples.py,
tests/functions.py, tests/stack.py, ...), never in one of the tests that use it: importing a
test module runs its module-level code and hands its tests to the importer's namespace, and a
conftest is pytest's to load (importing one registers its fixtures a second time, under
another directory). Fixtures stay in conftests; what they share is a plain function.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

import pytest

from tests.stack import REPO

pytestmark = pytest.mark.unit

ROOTS = (REPO / "tests", REPO / "sdk" / "python" / "tests")


def is_test_module(dotted: str) -> bool:
    """`tests.unit.test_keys`, `conftest`, `tests.e2e.conftest`: a module pytest collects."""
    last = dotted.rpartition(".")[2]
    return last.startswith("test_") or last == "conftest"


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, module) for every module an `import` or `from ... import` may load.

    `from package import name` may load the submodule `package.name`, so both count.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            if node.module:
                yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if node.module else base + alias.name


def test_modules_import_no_test_module_and_no_conftest() -> None:
    sources = sorted(path for root in ROOTS for path in root.rglob("*.py"))
    assert len(sources) > 50, f"found only {len(sources)} test sources under {ROOTS}"
    offenders = [
        f"{path.relative_to(REPO)}:{line}: imports {module}"
        for path in sources
        for line, module in imported_modules(ast.parse(path.read_bytes(), str(path)))
        if is_test_module(module)
    ]
    assert offenders == [], "move the shared helpers into a helpers module:\n" + "\n".join(
        offenders
    )


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("from tests.unit.test_keys import stored", ["tests.unit.test_keys"]),
        ("from tests.e2e.conftest import start_function", ["tests.e2e.conftest"]),
        ("from tests.e2e import conftest as e2e", ["tests.e2e.conftest"]),
        ("import tests.unit.test_gateway", ["tests.unit.test_gateway"]),
        ("from . import test_keys", [".test_keys"]),
        ("from .conftest import x", [".conftest"]),
        ("from conftest import x", ["conftest"]),
        ("from tests.unit.samples import stored", []),
        ("from tests.unit import samples, fakes", []),
        ("from mock_server import MockServer", []),
        ("from testing import x", []),
        ("import tests.stack", []),
    ],
)
def test_the_check_tells_test_modules_from_helpers(source: str, found: list[str]) -> None:
    modules = [module for _, module in imported_modules(ast.parse(source))]
    assert [module for module in modules if is_test_module(module)] == found
