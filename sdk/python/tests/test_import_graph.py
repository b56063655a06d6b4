"""The SDK's own import graph: no cycle, and no module reaching into another one's privates.

The graph is read from the source with `ast`, so it holds every import statement of every
`audit_ingest_sdk` module: at module level, under `if TYPE_CHECKING:`, and inside functions
(a lazy or type-only import is still a dependency, and a cycle through one is still a cycle).
Importing a module's parent package implicitly is not an edge; `from audit_ingest_sdk import
X` written in a submodule is one (to the package `__init__`, which imports every module).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "audit_ingest_sdk"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / "src" / PACKAGE


@dataclass(frozen=True)
class Import:
    """One imported thing: `importer` imports `target` (a module), and `name` from it if any."""

    importer: str
    target: str
    name: str | None
    line: int

    def where(self) -> str:
        what = f"{self.target}.{self.name}" if self.name else self.target
        return f"{self.importer}:{self.line} imports {what}"


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package's `__init__` by its own name)."""
    modules: dict[str, Path] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((PACKAGE, *parts))] = path
    return modules


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def in_package(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """The package-internal imports of one module, wherever they are in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if in_package(alias.name):
                    yield Import(module, alias.name, None, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            if not in_package(base):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in modules:  # `from package import module`
                    yield Import(module, submodule, None, node.lineno)
                else:
                    name = None if alias.name == "*" else alias.name
                    yield Import(module, base, name, node.lineno)


def import_graph() -> tuple[dict[str, list[Import]], dict[str, Path]]:
    modules = module_files()
    graph = {module: list(imports_of(module, path, modules)) for module, path in modules.items()}
    return graph, modules


def find_cycles(graph: dict[str, list[Import]]) -> list[list[Import]]:
    """Cycles met by a depth-first search, each as the chain of imports that closes it."""
    done: set[str] = set()
    cycles: list[list[Import]] = []

    def visit(module: str, chain: list[Import], on_chain: dict[str, int]) -> None:
        on_chain[module] = len(chain)
        for edge in graph.get(module, []):
            if edge.target in on_chain:
                cycles.append([*chain[on_chain[edge.target] :], edge])
            elif edge.target not in done:
                visit(edge.target, [*chain, edge], on_chain)
        del on_chain[module]
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [], {})
    return cycles


def describe(cycle: list[Import]) -> str:
    path = " -> ".join([cycle[0].importer, *(edge.target for edge in cycle)])
    return path + "\n    " + "\n    ".join(edge.where() for edge in cycle)


def test_the_package_has_modules_and_internal_imports() -> None:
    # Guards the tests below against reading nothing (a moved source tree, a broken walk).
    graph, modules = import_graph()
    assert PACKAGE in modules
    assert f"{PACKAGE}._client" in modules
    assert any(graph.values())


def test_every_import_names_an_existing_module() -> None:
    graph, modules = import_graph()
    unknown = [
        edge.where() for edges in graph.values() for edge in edges if edge.target not in modules
    ]
    assert not unknown, "imports of modules that do not exist:\n" + "\n".join(unknown)


def test_the_import_graph_has_no_cycle() -> None:
    graph, _ = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (TYPE_CHECKING and function-level imports count):\n" + (
        "\n".join(describe(cycle) for cycle in cycles)
    )


def test_no_module_imports_another_modules_private_name() -> None:
    # Private modules themselves may be imported inside the package (that is what the root
    # `__init__` re-exports from); a leading-underscore *name* from another module may not.
    graph, _ = import_graph()
    leaks = [
        edge.where()
        for edges in graph.values()
        for edge in edges
        if edge.name is not None and is_private(edge.name) and edge.target != edge.importer
    ]
    assert not leaks, "private names imported across modules:\n" + "\n".join(leaks)


def test_private_attributes_are_used_only_through_self_or_cls() -> None:
    # The other way into a private helper: `self._client._deliver`, `_errors._problem`, ...
    reached: list[str] = []
    for module, path in module_files().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and is_private(node.attr)):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            reached.append(f"{module}:{node.lineno} uses {ast.unparse(node)}")
    assert not reached, "private attributes reached from outside their object:\n" + "\n".join(
        reached
    )


def test_every_module_is_private_and_the_root_exports_the_api() -> None:
    # As with httpx: the public API is the package root, every module behind it is private,
    # and `__all__` lists exactly the public names the root holds.
    import audit_ingest_sdk

    public = [m for m in module_files() if m != PACKAGE and not is_private(m.rsplit(".", 1)[-1])]
    assert not public, f"modules without a leading underscore: {public}"
    exported = audit_ingest_sdk.__all__
    assert exported == sorted(exported)
    assert [name for name in exported if not hasattr(audit_ingest_sdk, name)] == []
    held = {name for name in vars(audit_ingest_sdk) if not name.startswith("_")}
    assert held == {name for name in exported if not name.startswith("_")}
