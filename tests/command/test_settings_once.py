"""Settings once: each behaviour that reads a setting does so in one part, so a setting's name
is spelled in at most 3 modules of the package -- the table (command/settings.py), the
contract's default (core/contract.py) and the part that decides the behaviour.

"Spelled" is what the code says, not the prose: an attribute (``server.graceful_timeout``), a
keyword argument, an assigned name or a string constant equal to the name, found with ``ast``
(comments and docstrings do not count; a string does, since ``getattr(x, "name")`` reads the
setting as surely as ``x.name``).

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

COMMON = "a common identifier: most of these modules spell it for something else ({})"
SPREAD = "read by {} each; to be one part that the others ask"
WORKER = ("read in one part on the master's side, {}; and by the worker (core/worker.py), on "
          "the other side of the fork, for {}")
PENDING: dict[str, str] = {
    # Names that are ordinary words in the code too: the count says nothing about the setting.
    "app": COMMON.format("a WSGI app, a loaded app"),
    "bind": COMMON.format("socket.bind, the ops endpoints' own binds"),
    "backlog": COMMON.format("the listen queue the ops sockets and metrics report"),
    "rpcbind": COMMON.format("the rpc package's registration with rpcbind"),
    "workers": COMMON.format("the pool's worker objects, status and metrics fields"),
    "threads": COMMON.format("thread objects, status fields"),
    "mode": COMMON.format("file modes, log modes, a stop's mode"),
    "name": COMMON.format("every object's name"),
    "reload": COMMON.format("the reload command and its messages"),
    "env": COMMON.format("os.environ copies"),
    "user": COMMON.format("privileges' user objects"),
    "group": COMMON.format("regex groups, process groups"),
    "control": COMMON.format("the control socket's objects"),
    "metrics": COMMON.format("the metrics objects"),
    "pidfile": COMMON.format("the pid file module and the client's lookup"),
    # Settings read in several parts.
    "max_children": SPREAD.format("master/pool.py, master/policies.py and master/supervisor.py")
                    + "; the control client checks workers against it",
    "graceful_timeout": WORKER.format("master/pool.py (grace(server): stopping and the enforcer "
                                      "ask it)", "its keep-alive drain (within half of it)"),
    "client_timeout": SPREAD.format("core/worker.py, core/mux.py, core/listeners.py and "
                                    "core/proxyproto.py") + "; the runner sets it",
    "keep_alive": SPREAD.format("core/worker.py, core/mux.py, core/listeners.py and "
                                "apps/wsgi.py"),
    "send_timeout": SPREAD.format("core/worker.py, core/mux.py and core/listeners.py"),
    "worker_connections": SPREAD.format("core/worker.py, core/listeners.py and "
                                        "core/handover.py"),
    "max_memory": WORKER.format("master/policies.py (recycling, runaways: the enforcer asks)",
                                "the allocation budget the kernel enforces, core/memguard.py"),
    "forwarded_allow_ips": SPREAD.format("apps/wsgi.py and core/keepalive.py") + "; the runner "
                           "sets it on the stdlib modes' servers",
    "log_file": SPREAD.format("command/cli.py (it sets up the log) and ops/logs.py") + "; the "
                "runner gives the file to the workers' user",
    "capture_output": SPREAD.format("command/cli.py and ops/logs.py") + "; the runner passes "
                      "it to the workers",
    "proxy_protocol": SPREAD.format("core/proxyproto.py") + "; the runner sets it on the "
                      "stdlib modes' servers",
}


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


@cache
def spellings() -> dict[str, set[str]]:
    return {module: spelled(tree) for module, tree in trees().items()}


def modules_spelling(name: str) -> list[str]:
    return [module for module, names in spellings().items() if name in names]


SETTINGS = sorted(name for name, value in vars(Config).items() if isinstance(value, Setting))


def test_the_count_sees_a_setting_where_the_table_declares_it() -> None:
    # The counter itself: every setting is spelled in the table, and the contract's defaults
    # are seen in core/contract.py (a counter that saw nothing would pass everything).
    for name in SETTINGS:
        assert "command/settings.py" in modules_spelling(name), name
    assert "core/contract.py" in modules_spelling("graceful_timeout")


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
