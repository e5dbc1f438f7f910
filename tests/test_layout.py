"""The layout promises of DESIGN.md, checked: no import cycle between prefork's modules (imports
under TYPE_CHECKING and inside functions included), small modules and classes, and the core
never importing the command."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "prefork"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 300


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every prefork module ``name`` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        found.update(t for t in targets if t in known and t != name)
    return found


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    # A package's __init__ re-exporting its public names is not a dependency of its modules.
    graph["prefork"] = set()
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep):], dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_modules_and_classes_stay_small() -> None:
    too_big = []
    for name, path in _modules().items():
        source = path.read_text()
        lines = source.count("\n")
        if lines > MAX_MODULE_LINES:
            too_big.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    too_big.append(f"{name}.{node.name}: {size} lines")
    assert not too_big, too_big


def test_core_and_master_do_not_import_the_command() -> None:
    modules = _modules()
    offenders = {
        name: sorted(dep for dep in _imports(name, path, set(modules))
                     if dep.startswith("prefork.command"))
        for name, path in modules.items()
        if name.startswith(("prefork.core", "prefork.master", "prefork.ops"))
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_master_and_worker_know_the_server_only_through_the_contract() -> None:
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("prefork.master") or name == "prefork.core.worker":
            assert "prefork.core.servers" not in _imports(name, path, set(modules)), name
