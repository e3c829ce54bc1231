"""The package's import structure: no import circles, no reaching into private names.

The import graph is read from the source with :mod:`ast` (nothing is imported),
counting every import: module level, inside functions and under
``TYPE_CHECKING``. A circle closed by any of them is still a circle for a reader.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "oauthsmtp"
TESTS = ROOT / "tests"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@dataclass(frozen=True)
class Import:
    """One imported name: ``source`` imports ``name`` from module ``target``."""

    source: str
    line: int
    target: str  # the module the name comes from (or the module itself)
    name: str | None  # None for ``import target``
    is_module: bool  # the name is itself a module of the package


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    base = package.split(".")
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str, path: Path) -> Iterator[Import]:
    """Every import in the file, wherever it stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, node.lineno, alias.name, None, alias.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node)
            for alias in node.names:
                full = f"{target}.{alias.name}"
                if full in MODULES:
                    yield Import(module, node.lineno, full, None, True)
                else:
                    yield Import(module, node.lineno, target, alias.name, False)


def _private_attribute_uses(module: str, path: Path) -> Iterator[str]:
    """``mod._name`` where ``mod`` was bound by importing a module of the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node)
            for alias in node.names:
                if f"{target}.{alias.name}" in MODULES:
                    bound.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in MODULES:
                    bound.add(alias.asname)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
            and _is_private(node.attr)
        ):
            yield f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}"


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for imp in imports_of(name, path):
            if imp.target in MODULES and imp.target != name:
                graph[name].add(imp.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _reaches_in(imp: Import) -> bool:
    return imp.name is not None and _is_private(imp.name) and imp.target.startswith("oauthsmtp")


def test_no_import_circles() -> None:
    circles = cycles(import_graph())
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_no_module_imports_another_modules_private_names() -> None:
    offenders = []
    for name, path in MODULES.items():
        for imp in imports_of(name, path):
            if (
                imp.name is not None
                and _is_private(imp.name)
                and imp.target.startswith("oauthsmtp")
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{imp.line}: {imp.target}.{imp.name}")
        offenders.extend(_private_attribute_uses(name, path))
    assert not offenders, "private names used across modules:\n" + "\n".join(offenders)


def test_tests_use_no_private_names() -> None:
    """Tests import public names or a documented internal seam, never a ``_name``."""
    offenders = []
    for path in sorted(TESTS.glob("*.py")):
        module = f"tests.{path.stem}"
        for imp in imports_of(module, path):
            if (
                imp.name is not None
                and _is_private(imp.name)
                and imp.target.startswith("oauthsmtp")
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{imp.line}: {imp.target}.{imp.name}")
        offenders.extend(_private_attribute_uses(module, path))
    assert not offenders, "tests reaching into private names:\n" + "\n".join(offenders)


def test_the_checks_see_a_circle_and_a_private_import(tmp_path: Path) -> None:
    """The walker itself works: a made-up graph with a circle is caught."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    source = tmp_path / "mod.py"
    source.write_text("from oauthsmtp._oauth.params import _secret\n", encoding="utf-8")
    found = list(imports_of("tests.mod", source))
    assert found == [Import("tests.mod", 1, "oauthsmtp._oauth.params", "_secret", False)]
