"""What the master does for each signal (DESIGN.md's table) and each control-socket command
(prefork.ops.control validated it).

Kept out of the supervisor so that it stays a loop: this module sees the master only through
:class:`Controlled`, the few verbs a signal or command may use.  Replies tell the truth about
what was done: ``scale`` says the size it set next to the size asked for (the pool is bounded
by ``max_children``), ``reload`` with ``wait`` is answered with the reload's outcome, later.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any, Protocol

from prefork.master.stopping import Stop, StopMode
from prefork.master.upgrade import Upgrade
from prefork.master.waiters import ReloadWaiters
from prefork.ops.control import PendingReply, scale_target

MASTER_SIGNALS = (
    signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTTIN,
    signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH,
)
# Stop requests from other threads (shutdown(), server_close()), queued like signals.
STOP_GRACEFUL, STOP_QUICK = -1, -2


class Controlled(Protocol):
    size: int
    waiters: ReloadWaiters
    stop: Stop
    upgrade: Upgrade

    def reload(self) -> None: ...

    def scale(self, size: int, resume: bool = True) -> bool: ...

    def begin_stop(self, mode: StopMode, escalate: bool = False, close: bool = False) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def pause(self) -> None: ...

    def reopen_logs(self) -> None: ...


def on_control(master: Controlled, request: dict[str, Any]) -> dict[str, Any] | PendingReply:
    """The reply to one validated request (``"ok": true`` is added unless it says ``ok``)."""
    command = request["command"]
    if command == "reload" and "wait" in request:
        pending = PendingReply(request["wait"], "reload")
        master.waiters.add(pending)  # before reload(): a refusal answers it at once
        master.reload()
        return pending
    if command == "reload":
        master.reload()
    elif command == "scale":
        target = scale_target(request["workers"], master.size)
        if not master.scale(target):
            return {"ok": False, "error": "the master is stopping"}
        return {**master.status(), "requested": target}
    elif command == "stop":
        master.begin_stop(StopMode.GRACEFUL if request.get("graceful", True) else StopMode.QUICK)
    return master.status()


def signal_table(master: Controlled) -> dict[int, Callable[[], object]]:
    """What the master does for each signal (DESIGN.md's table), as bound methods."""
    return {
        signal.SIGTERM: lambda: master.begin_stop(StopMode.GRACEFUL, close=True),
        signal.SIGINT: lambda: master.begin_stop(StopMode.QUICK, escalate=True, close=True),
        signal.SIGQUIT: lambda: master.begin_stop(StopMode.QUICK, escalate=True, close=True),
        STOP_GRACEFUL: lambda: master.begin_stop(StopMode.GRACEFUL),
        STOP_QUICK: lambda: master.begin_stop(StopMode.QUICK, escalate=True),
        signal.SIGHUP: master.reload,
        signal.SIGTTIN: lambda: master.scale(master.size + 1),
        signal.SIGTTOU: lambda: master.scale(master.size - 1, resume=False),
        signal.SIGUSR1: master.reopen_logs,
        signal.SIGWINCH: master.pause,
        signal.SIGUSR2: lambda: master.upgrade.start(stopping=master.stop.requested),
    }

