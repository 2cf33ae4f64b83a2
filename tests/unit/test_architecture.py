"""Every dependency points down: the kernel imports nothing above it, no two top-level
packages import each other in a circle, and no module shares a package's name (a
deployment entrypoint puts its folder on sys.path, where such a module would shadow the
package). Read from the code with ``ast``, not from a linter plugin."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("rollback", "tasks", "flows", "reports", "deployments", "devstack")
KERNEL = "rollback"


def _modules(package: str) -> Iterator[Path]:
    folder = ROOT / package
    if folder.is_dir():
        yield from sorted(folder.rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Top-level package names imported by ``path`` (also inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0], node.lineno


def _edges() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> ["file:line", ...] (our packages only)."""
    edges: dict[str, dict[str, list[str]]] = {p: {} for p in PACKAGES}
    for package in PACKAGES:
        for path in _modules(package):
            for name, line in _imports(path):
                if name in PACKAGES and name != package:
                    where = f"{path.relative_to(ROOT)}:{line}"
                    edges[package].setdefault(name, []).append(where)
    return edges


def test_the_kernel_imports_nothing_above_it() -> None:
    upward = {name: places for name, places in _edges()[KERNEL].items() if name in PACKAGES}
    assert upward == {}, f"rollback/ must not import {sorted(upward)}: {upward}"


def test_no_import_circle_between_top_level_packages() -> None:
    edges = {p: set(targets) for p, targets in _edges().items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    circles = sorted(p for p in PACKAGES if reaches(p, p, {p}))
    detail = {p: sorted(edges[p]) for p in circles}
    assert circles == [], f"import circle between packages: {detail}"


def test_no_module_shares_a_top_level_package_name() -> None:
    clashes = [
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in _modules(package)
        if path.stem in PACKAGES
    ]
    assert clashes == []
