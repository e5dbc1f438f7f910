"""Deferred control replies (prefork.ops.buffered.Deferred through prefork.ops.control): a
handler answers a request later, from the loop, while the loop keeps serving everyone else; a
reply that never comes is replaced by an error at the deferred's own deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_control import Loop

from prefork.ops.control import (
    ControlError,
    ControlServer,
    PendingReply,
    Reply,
    Request,
    RequestError,
    request,
    validate,
)


class Waiting:
    """``reload`` with ``wait`` is answered by the next ``stop`` (both run in the loop)."""

    def __init__(self) -> None:
        self.pending: list[PendingReply] = []

    def handle(self, req: Request) -> Reply | PendingReply:
        if req["command"] == "reload" and "wait" in req:
            pending = PendingReply(req["wait"], "reload")
            self.pending.append(pending)
            return pending
        if req["command"] == "stop":
            for pending in self.pending:
                pending.answer({"ok": True, "outcome": "served"})
            self.pending.clear()
        return {"waiting": len(self.pending)}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Waiting]]:
    path = str(tmp_path / "ctl")
    handler = Waiting()
    with ControlServer(path, handler.handle) as server:
        loop = Loop(server)
        try:
            yield path, handler
        finally:
            loop.stop()


def _in_thread(path: str, req: Request, timeout: float = 10.0) -> tuple[threading.Thread,
                                                                        list[Any]]:
    """``request`` in a thread; its reply, or the ControlError it raised, lands in the list."""
    out: list[Any] = []

    def ask() -> None:
        try:
            out.append(request(path, req, timeout))
        except ControlError as exc:
            out.append(exc)

    thread = threading.Thread(target=ask)
    thread.start()
    return thread, out


def test_a_deferred_reply_comes_later_and_the_loop_serves_meanwhile(
    served: tuple[str, Waiting],
) -> None:
    path, _ = served
    waiters = [_in_thread(path, {"command": "reload", "wait": 30}) for _ in range(3)]
    # Meanwhile other clients are answered at once, and the three are waiting.
    deadline = time.monotonic() + 10
    while request(path, {"command": "status"}) != {"ok": True, "waiting": 3}:
        assert time.monotonic() < deadline, "the three reloads never waited"
    assert all(not out for _, out in waiters)
    assert request(path, {"command": "stop"}) == {"ok": True, "waiting": 0}
    for thread, out in waiters:
        thread.join(10)
        assert out == [{"ok": True, "outcome": "served"}]


def test_a_deferred_reply_that_never_comes_times_out(served: tuple[str, Waiting]) -> None:
    path, _ = served
    start = time.monotonic()
    reply = request(path, {"command": "reload", "wait": 0.3})
    assert reply == {"ok": False, "error": "reload: no outcome within 0.3 s"}
    assert 0.3 <= time.monotonic() - start < 5
    # Answering it after the timeout does nothing (and raises nothing).
    assert request(path, {"command": "stop"}) == {"ok": True, "waiting": 0}


def test_a_client_gone_before_the_reply_costs_nothing(served: tuple[str, Waiting]) -> None:
    path, _ = served
    thread, out = _in_thread(path, {"command": "reload", "wait": 30}, timeout=0.2)
    thread.join(10)
    assert len(out) == 1 and isinstance(out[0], ControlError)  # the client gave up
    assert request(path, {"command": "stop"}) == {"ok": True, "waiting": 0}
    assert request(path, {"command": "status"}) == {"ok": True, "waiting": 0}


@pytest.mark.parametrize("wait", [0, -1, True, "5", float("inf"), float("nan"), 10**9])
def test_wait_must_be_a_sensible_number_of_seconds(wait: object) -> None:
    with pytest.raises(RequestError, match='"wait"'):
        validate({"command": "reload", "wait": wait})
