"""The codebase's shape: no import circles in ``src/`` or ``benchmarks/``.

Every import counts, also those under ``if TYPE_CHECKING:`` and inside functions (read
with :mod:`ast`): a circle that Python tolerates at run time still means two modules
that cannot be read, or changed, one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path, base: Path, package: str) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts]) if parts else package


def _imports(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """Every module ``module`` imports, anywhere in it (absolute names)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def graph(base: Path, package: str) -> dict[str, set[str]]:
    """The import graph of the modules under ``base`` (the package ``package``)."""
    modules: dict[str, tuple[ast.Module, bool]] = {}
    for path in sorted(base.rglob("*.py")):
        name = _module_name(path, base, package)
        modules[name] = (ast.parse(path.read_text(encoding="utf-8")), path.stem == "__init__")
    return {
        name: {
            target
            for target in _imports(tree, name, is_package)
            if target in modules and target != name
        }
        for name, (tree, is_package) in modules.items()
    }


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm),
    ignoring a package's imports of its own submodules (its ``__init__`` re-exports)."""
    pruned = {
        name: {t for t in targets if not t.startswith(name + ".")}
        for name, targets in edges.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(pruned[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(pruned):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles_in_the_library() -> None:
    assert circles(graph(ROOT / "src" / "logout_middleware", "logout_middleware")) == []


def test_no_import_circles_in_the_benchmarks() -> None:
    assert circles(graph(ROOT / "benchmarks", "benchmarks")) == []


def test_the_circle_finder_finds_a_circle(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from . import c\n")
    (tmp_path / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import z\n"
    )
    assert circles(graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b", "pkg.c"]]
