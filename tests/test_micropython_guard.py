"""Guard: the MicroPython-safe core imports nothing MicroPython lacks at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "aimdb"
CORE = sorted(
    [SRC / "__init__.py", SRC / "_compat.py", SRC / "_errors.py", SRC / "_backends" / "__init__.py"]
    # _ring_iter.py is CPython-only (async generators), imported under try/except SyntaxError
    + [p for p in (SRC / "_core").glob("*.py") if p.name != "_ring_iter.py"]
    + list((SRC / "testing").glob("*.py"))
    + ([SRC / "_backends" / "_micropython.py"] if (SRC / "_backends" / "_micropython.py").exists() else [])
)
FORBIDDEN = {"typing", "__future__", "dataclasses", "enum", "abc", "weakref", "functools", "collections.abc"}
# allowed only inside try/except ImportError (optional on MicroPython)
OPTIONAL = {"msgspec", "logging", "difflib", "random", "cbor2", "json", "time", "sys", "asyncio"}


def _runtime_imports(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, module, guarded-by-try/except-ImportError) of every run-time import."""
    out: list[tuple[int, str, bool]] = []

    def handle(node: ast.AST, guarded: bool, type_only: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for c in node.body:
                handle(c, guarded, True)
            for c in node.orelse:
                handle(c, guarded, type_only)
            return
        if isinstance(node, ast.Try):
            catches = any(h.type is not None and "ImportError" in ast.unparse(h.type) for h in node.handlers)
            for c in node.body:
                handle(c, guarded or catches, type_only)
            for c in [*node.handlers, *node.orelse, *node.finalbody]:
                handle(c, guarded, type_only)
            return
        if isinstance(node, ast.Import) and not type_only:
            out.extend((node.lineno, a.name, guarded) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not type_only and node.level == 0 and node.module:
            out.append((node.lineno, node.module, guarded))
        for child in ast.iter_child_nodes(node):
            handle(child, guarded, type_only)

    handle(tree, False, False)
    return out


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(SRC)))
def test_core_module_is_micropython_safe(path: Path) -> None:
    tree = ast.parse(path.read_text())
    problems = []
    for lineno, module, guarded in _runtime_imports(tree):
        top = module.split(".")[0]
        if module in FORBIDDEN or top in FORBIDDEN:
            if not guarded or top in {"__future__", "dataclasses", "enum", "abc", "weakref"}:
                problems.append(f"{path.name}:{lineno} imports {module} at run time")
        elif top not in OPTIONAL and not guarded and top != "aimdb":
            problems.append(f"{path.name}:{lineno} imports {module} (not known to exist on MicroPython)")
    assert problems == []


def test_guard_catches_a_forbidden_import() -> None:
    bad = ast.parse("import dataclasses\nif TYPE_CHECKING:\n    import typing\n")
    found = _runtime_imports(bad)
    assert found == [(1, "dataclasses", False)]
