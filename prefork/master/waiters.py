"""Control clients waiting for the outcome of a reload (``prefork reload``, which must exit 0 only
once the new generation serves, and non-zero when it did not take over).

Each waiter is a :class:`~prefork.ops.control.PendingReply` the control socket keeps open,
answered from the master's loop; nothing waits.  A waiter belongs to the first reload that
*begins* after it asked: one asked for while another reload runs is queued behind it (as its
HUP is, see prefork.master.generations), so it learns the outcome of its own reload, not of
the one that was already booting with older code.
"""

from __future__ import annotations

from typing import Any

from prefork.ops.control import PendingReply, Reply


class ReloadWaiters:
    """Methods: add(pending), began(), finished(reply), failed(error), cancel(error)."""

    def __init__(self) -> None:
        self.queued: list[PendingReply] = []  # their reload has not begun yet
        self.running: list[PendingReply] = []  # waiting for the reload in progress

    def add(self, pending: PendingReply) -> None:
        self.queued.append(pending)

    def began(self) -> None:
        """A reload began: everyone who asked so far waits for it."""
        self.running.extend(self.queued)
        self.queued.clear()

    def finished(self, reply: dict[str, Any]) -> None:
        """The reload in progress took over: its waiters get ``reply`` (``"ok": true`` added)."""
        self._answer(self.running, {"ok": True, **reply})

    def failed(self, error: str) -> None:
        """The reload in progress did not take over."""
        self._answer(self.running, _error(error))

    def refused(self, error: str) -> None:
        """A reload could not even begin: those waiting for one to begin are told."""
        self._answer(self.queued, _error(error))

    def cancel(self, error: str) -> None:
        """No reload will finish (a pause, a stop): everyone is told."""
        self._answer(self.running + self.queued, _error(error))
        self.queued.clear()

    @staticmethod
    def _answer(waiters: list[PendingReply], reply: Reply) -> None:
        for pending in waiters:
            pending.answer(reply)
        waiters.clear()


def _error(text: str) -> Reply:
    return {"ok": False, "error": text}
