"""What the master does for each control-socket command (prefork.ops.control validated it).

Kept out of the supervisor so that it stays a loop: this module sees the master only through
:class:`Controlled`, the few verbs a command may use.  Replies tell the truth about what was
done: ``scale`` says the size it set next to the size asked for (the pool is bounded by
``max_children``), ``reload`` with ``wait`` is answered with the reload's outcome, later.
"""

from __future__ import annotations

from typing import Any, Protocol

from prefork.master.stopping import StopMode
from prefork.master.waiters import ReloadWaiters
from prefork.ops.control import PendingReply, scale_target


class Controlled(Protocol):
    size: int
    waiters: ReloadWaiters

    def reload(self) -> None: ...

    def scale(self, size: int, resume: bool = True) -> bool: ...

    def begin_stop(self, mode: StopMode, escalate: bool = False, close: bool = False) -> None: ...

    def status(self) -> dict[str, Any]: ...


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
