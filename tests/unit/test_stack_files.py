"""The test files that start a whole local stack are the ones tests/conftest.py keeps on
one xdist worker: a new stack test missing from that list would run beside another
stack on two cores, and a renamed one would silently leave the list."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import STACK_TEST_FILES, StacksInOneUnit

ROOT = Path(__file__).resolve().parents[2]


def _starts_a_stack(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "devstack.stack"
        and any(alias.name == "up" for alias in node.names)
        for node in ast.walk(tree)
    )


def test_every_file_that_starts_a_stack_is_in_the_stack_unit() -> None:
    # GIVEN every test file
    files = sorted((ROOT / "tests").rglob("test_*.py"))
    # WHEN we pick those that import devstack.stack.up
    starting = {str(f.relative_to(ROOT)) for f in files if _starts_a_stack(f)}
    # THEN they are exactly the files conftest groups, and each exists
    assert starting == STACK_TEST_FILES
    assert all((ROOT / name).is_file() for name in STACK_TEST_FILES)


def test_the_scheduler_puts_the_stack_files_in_one_unit_and_the_others_per_file(
    pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the scheduler `make test` uses (-n 2), and node ids of two stack files
    monkeypatch.setattr(pytestconfig.option, "tx", ["2*popen"])
    scheduler = StacksInOneUnit(pytestconfig)
    ui, scale = sorted(STACK_TEST_FILES)[:2]
    # WHEN xdist asks for their unit of work
    units = [scheduler._split_scope(n) for n in (f"{ui}::a", f"{scale}::b[x]", f"{ui}::c")]
    # THEN the stack files share one unit; any other file is its own unit
    assert len(set(units)) == 1
    assert scheduler._split_scope("tests/unit/test_steps.py::a") == "tests/unit/test_steps.py"
