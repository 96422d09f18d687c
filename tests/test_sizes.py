"""The size limits that keep the code readable, checked as features come: no module over
500 lines, no class over 300, no function over 80 (physical lines of the definition, its
decorators included; a nested function counts in the one that holds it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE, CLASS, FUNCTION = 500, 300, 80
CHECKED = ("glowflow", "tests", "benchmarks", "tools")


def _sources() -> list[Path]:
    return sorted(p for folder in CHECKED for p in (ROOT / folder).rglob("*.py"))


def oversized(source: str, name: str) -> list[str]:
    """Each module, class or outermost function of ``source`` past its limit, as text."""
    found = []
    lines = len(source.splitlines())
    if lines > MODULE:
        found.append(f"{name}: {lines} lines (module limit {MODULE})")

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([d.lineno for d in child.decorator_list] + [child.lineno])
                length = child.end_lineno - start + 1
                is_class = isinstance(child, ast.ClassDef)
                limit = CLASS if is_class else FUNCTION
                if length > limit and (is_class or not in_function):
                    kind = "class" if is_class else "function"
                    found.append(f"{name}:{child.lineno} {kind} {child.name}: {length} lines "
                                 f"(limit {limit})")  # fmt: skip
                visit(child, in_function or not is_class)
            else:
                visit(child, in_function)

    visit(ast.parse(source), False)
    return found


def test_the_checker_finds_each_kind_of_oversize():
    body = "\n".join(f"        x{i} = {i}" for i in range(FUNCTION))
    nested = f"def outer():\n    def inner():\n{body}\n    return inner\n"
    assert oversized(nested, "m") == ["m:1 function outer: 83 lines (limit 80)"]
    methods = "\n".join(f"    def f{i}(self):\n        return {i}\n" for i in range(101))
    assert oversized(f"class Big:\n{methods}", "m")[0].startswith("m:1 class Big: 303 lines")
    assert oversized("pass\n" * (MODULE + 1), "m") == ["m: 501 lines (module limit 500)"]
    assert oversized("def ok():\n    return 1\n", "m") == []


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_sizes_stay_within_the_limits(path):
    assert oversized(path.read_text(), str(path.relative_to(ROOT))) == []
