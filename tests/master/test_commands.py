"""Control commands as the master answers them (prefork.master.commands), on a Master whose pool
forks nothing (the Harness of test_supervisor): ``reload`` with ``wait`` is answered with the
reload's outcome, later; ``scale`` says the size it set."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import test_supervisor
from test_supervisor import EXIT_1, Harness

from prefork.master.commands import on_control
from prefork.master.supervisor import Phase
from prefork.ops.control import PendingReply

make = test_supervisor.make  # the fixture, shared


class Client:
    """Stands in for the waiting connection: records what the deferred reply sends."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_late(self, data: bytes) -> None:
        self.sent.append(json.loads(data))


def reload_and_wait(h: Harness) -> Client:
    pending = on_control(h.master, {"command": "reload", "wait": 30.0})
    assert isinstance(pending, PendingReply)
    client = Client()
    pending.bind(client)
    return client


def test_reload_is_answered_once_the_new_generation_serves(make: Callable[..., Harness]) -> None:
    h = make(workers=2)
    h.serving()
    client = reload_and_wait(h)
    new = h.maintain()
    h.ready(new[0])
    h.maintain()
    assert client.sent == []  # half the new generation is no takeover
    h.ready(new[1])
    h.maintain()
    assert h.master.phase is Phase.SERVING
    (reply,) = client.sent
    assert reply["ok"] is True and reply["master"]["generation"] == 2
    assert {w["pid"] for w in reply["workers"]} >= {w.pid for w in new}


def test_a_failed_reload_is_answered_with_the_failure(make: Callable[..., Harness]) -> None:
    h = make(workers=1)
    h.serving()
    client = reload_and_wait(h)
    (broken,) = h.maintain()
    h.exit(broken, EXIT_1)
    (reply,) = client.sent
    assert reply["ok"] is False
    assert reply["error"] == (f"generation 2 failed to boot (worker {broken.age}, pid "
                              f"{broken.pid}: exit status 1); generation 1 keeps serving")


def test_a_refused_reload_is_answered_at_once(make: Callable[..., Harness]) -> None:
    h = make(workers=1)
    h.serving()
    h.server.reload_error = ValueError("workers: not a number")
    client = reload_and_wait(h)
    assert client.sent == [{"ok": False, "error": "reload failed: ValueError: workers: not a "
                                                  "number; generation 1 keeps serving"}]


def test_a_reload_asked_for_during_another_gets_its_own_outcome(
    make: Callable[..., Harness],
) -> None:
    h = make(workers=1)
    h.serving()
    first = reload_and_wait(h)
    second = reload_and_wait(h)  # queued behind the running one, like a second HUP
    (gen2,) = h.maintain()
    h.ready(gen2)
    h.maintain()  # generation 2 serves; the queued reload starts generation 3
    assert [r["master"]["generation"] for r in first.sent] == [2]
    assert second.sent == []
    (gen3,) = h.maintain()
    h.exit(gen3, EXIT_1)
    assert second.sent[0]["ok"] is False and "generation 3 failed" in second.sent[0]["error"]


def test_a_pause_or_a_stop_answers_the_waiting(make: Callable[..., Harness]) -> None:
    h = make(workers=1)
    h.serving()
    paused = reload_and_wait(h)
    h.signal(signal.SIGWINCH)
    assert paused.sent == [{"ok": False, "error": "reload cancelled: the workers were stopped "
                                                  "(WINCH)"}]
    h.signal(signal.SIGHUP)  # resumes
    stopped = reload_and_wait(h)
    h.signal(signal.SIGTERM)
    assert stopped.sent[0]["ok"] is False and "stopping" in stopped.sent[0]["error"]
    late = reload_and_wait(h)
    assert late.sent == [{"ok": False, "error": "the master is stopping"}]


def test_scale_says_the_size_it_set(make: Callable[..., Harness]) -> None:
    h = make(workers=2, max_children=4)
    h.serving()
    reply = on_control(h.master, {"command": "scale", "workers": 1000})
    assert isinstance(reply, dict)
    assert (reply["requested"], reply["master"]["size"], reply["master"]["max_children"]) == (
        1000, 4, 4)
    h.signal(signal.SIGTERM)
    assert on_control(h.master, {"command": "scale", "workers": "+1"}) == {
        "ok": False, "error": "the master is stopping"}
