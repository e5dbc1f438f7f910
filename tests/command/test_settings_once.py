"""Settings once: each behaviour that reads a setting does so in one part, so a setting's name
is spelled in at most 3 modules of the package -- the table (command/settings.py), the
contract's default (core/contract.py) and the part that decides the behaviour.

"Spelled" is what the code says, not the prose: an attribute (``server.graceful_timeout``), a
keyword argument, an assigned name or a string constant equal to the name, found with ``ast``
(comments and docstrings do not count; a string does, since ``getattr(x, "name")`` reads the
setting as surely as ``x.name``).

A few settings are named with ordinary words (ORDINARY: ``name``, ``workers``, ``mode``...),
which most modules spell for something else; for those, only what reads or declares the setting
counts (:func:`reads`): an attribute of a server or a config (``server.workers``,
``self.server.name``, ``config.bind``, ``config.values["env"]``), ``self.<name>`` or ``cls.<name>``
and a class-level assignment in a server class (a subclass of PoolServer or PreforkMixIn, or
the table's Config), and a ``getattr``-family call on a server or a config with the name as a
string.

PENDING lists the settings spelled in more modules today, each with the reason it is not yet
one part; the test fails when a setting not in it goes over the bound, and when one in it no
longer does (take it off the list).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

from prefork.command.setting import Setting
from prefork.command.settings import Config

PACKAGE = Path(__file__).resolve().parents[2] / "prefork"
BOUND = 3  # the table, the contract's default, the part

# Settings named with ordinary words, counted by what reads them (see the module's docstring).
ORDINARY = frozenset({"app", "bind", "backlog", "rpcbind", "workers", "threads", "mode", "name",
                      "reload", "env", "user", "group", "control", "metrics", "pidfile"})
HOLDERS = frozenset({"server", "config"})  # what a setting is read from
SERVER_CLASSES = frozenset({"PoolServer", "PreforkMixIn", "Config"})  # whose self is a holder
ACCESSORS = frozenset({"getattr", "setattr", "hasattr", "delattr"})
PENDING: dict[str, str] = {}  # (none left: each setting is one part now)


@cache
def trees() -> dict[str, ast.Module]:
    return {str(path.relative_to(PACKAGE)): ast.parse(path.read_text(encoding="utf-8"))
            for path in sorted(PACKAGE.rglob("*.py"))}


def spelled(tree: ast.Module) -> set[str]:
    """The names ``tree`` spells in code."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, (ast.keyword, ast.arg)) and node.arg:
            names.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _base_name(expr: ast.expr) -> str:
    if isinstance(expr, ast.Name):
        return expr.id
    return expr.attr if isinstance(expr, ast.Attribute) else ""


def _holds(expr: ast.expr, in_server: bool) -> bool:
    """Whether ``expr`` is a server or a config (``server``, ``x.server``, ``config.values``;
    ``self``/``cls`` inside a server class)."""
    if in_server and isinstance(expr, ast.Name) and expr.id in ("self", "cls"):
        return True
    if isinstance(expr, ast.Attribute) and expr.attr == "values":
        expr = expr.value
    return _base_name(expr) in HOLDERS


def _reads_in(node: ast.AST, in_server: bool, names: set[str]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef):
            server = any(_base_name(b) in SERVER_CLASSES for b in child.bases) or (
                child.name in SERVER_CLASSES)
            for statement in child.body:  # the class's own declarations
                targets = (statement.targets if isinstance(statement, ast.Assign) else
                           [statement.target] if isinstance(statement, ast.AnnAssign) else [])
                names.update(t.id for t in targets if server and isinstance(t, ast.Name))
            _reads_in(child, server, names)
            continue
        if isinstance(child, ast.Attribute) and _holds(child.value, in_server):
            names.add(child.attr)
        elif (isinstance(child, ast.Subscript) and _holds(child.value, in_server)
              and isinstance(child.slice, ast.Constant) and isinstance(child.slice.value, str)):
            names.add(child.slice.value)
        elif (isinstance(child, ast.Call) and _base_name(child.func) in ACCESSORS
              and len(child.args) >= 2 and _holds(child.args[0], in_server)
              and isinstance(child.args[1], ast.Constant)
              and isinstance(child.args[1].value, str)):
            names.add(child.args[1].value)
        _reads_in(child, in_server, names)


def reads(tree: ast.Module) -> set[str]:
    """The settings ``tree`` reads or declares (for ORDINARY names; see the docstring)."""
    names: set[str] = set()
    _reads_in(tree, False, names)
    return names


@cache
def readings() -> dict[str, set[str]]:
    return {module: reads(tree) for module, tree in trees().items()}


@cache
def spellings() -> dict[str, set[str]]:
    return {module: spelled(tree) for module, tree in trees().items()}


def modules_spelling(name: str) -> list[str]:
    """The modules counted for setting ``name``."""
    if name not in ORDINARY:
        return spelled_in(name)
    return [module for module, names in readings().items() if name in names]


def spelled_in(name: str) -> list[str]:
    """Every module that spells ``name`` at all (the count of a setting not in ORDINARY)."""
    return [module for module, names in spellings().items() if name in names]


SETTINGS = sorted(name for name, value in vars(Config).items() if isinstance(value, Setting))


def test_the_count_sees_a_setting_where_the_table_declares_it() -> None:
    # The counter itself: every setting is spelled in the table, and the contract's defaults
    # are seen in core/contract.py (a counter that saw nothing would pass everything).
    for name in SETTINGS:
        assert "command/settings.py" in modules_spelling(name), name
    assert "core/contract.py" in modules_spelling("graceful_timeout")
    # An ordinary word counts where the setting is read, not where it names something else:
    # master/sizing.py's server.workers, not the pool's dict of workers.
    workers = modules_spelling("workers")
    assert "master/sizing.py" in workers, workers
    assert "master/pool.py" not in workers and "master/pool.py" in spelled_in("workers")
    # ... and self.workers in a server class, its class-level declaration, a config's value.
    code = ("class S(PreforkMixIn):\n    threads = 2\n    def f(self): return self.workers\n"
            "def g(config, pool): return config.values['env'], pool.name, getattr(config, 'user')")
    names = reads(ast.parse(code))
    assert {"threads", "workers", "env", "user"} <= names and "name" not in names, names


@pytest.mark.parametrize("name", SETTINGS)
def test_a_setting_is_spelled_in_at_most_three_modules(name: str) -> None:
    modules = modules_spelling(name)
    if name in PENDING:
        assert len(modules) > BOUND, (
            f"{name} is spelled in {len(modules)} modules now ({', '.join(modules)}): take it "
            "off PENDING")
        return
    assert len(modules) <= BOUND, (
        f"{name} is spelled in {len(modules)} modules: {', '.join(modules)}; the rule is one "
        "part that decides the behaviour (the others ask it), beside the table and the "
        "contract's default")


def test_pending_names_settings() -> None:
    assert set(PENDING) <= set(SETTINGS)
    assert set(SETTINGS) >= ORDINARY
