"""Process titles: the pure formatting, the change-only cache, and a real title seen in
/proc/PID/cmdline of a forked child."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import CHILD_TIMEOUT, forked, wait_exit, wait_for
from prefork.ops import titles


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Replace setproctitle with a recorder; start with an empty cache."""
    calls: list[str] = []
    monkeypatch.setattr(titles, "_setproctitle", calls.append)
    monkeypatch.setattr(titles, "_last", None)
    yield calls


def test_master_title() -> None:
    assert (
        titles.master_title("web", 4, ["127.0.0.1:8000"])
        == "prefork: master [web] 4 workers 127.0.0.1:8000"
    )
    assert (
        titles.master_title("web", 1, ["127.0.0.1:8000", "unix:/run/web.sock"])
        == "prefork: master [web] 1 worker 127.0.0.1:8000 unix:/run/web.sock"
    )
    assert titles.master_title("", 2, []) == "prefork: master 2 workers"


def test_master_title_states() -> None:
    where = ["127.0.0.1:8000"]
    assert titles.master_title("web", 0, where, "paused") == "prefork: master [web] paused " \
        "127.0.0.1:8000"
    assert titles.master_title("web", 2, where, "reloading") == "prefork: master [web] 2 " \
        "workers reloading 127.0.0.1:8000"
    assert titles.master_title("", 1, [], "stopping") == "prefork: master 1 worker stopping"


def test_counted() -> None:
    assert [titles.counted(n, "worker") for n in (0, 1, 2)] == [
        "0 workers", "1 worker", "2 workers"]


def test_worker_title() -> None:
    assert titles.worker_title(3, "web", "busy", 1523) == "prefork: worker 3 [web] busy 1523 req"
    assert titles.worker_title(0, "", "idle", 0) == "prefork: worker 0 idle 0 req"


def test_control_characters_become_spaces() -> None:
    assert titles.worker_title(1, "a\nb\x00c", "idle", 2) == "prefork: worker 1 [a b c] idle 2 req"
    assert titles.master_title("x", 2, ["h\t:1"]) == "prefork: master [x] 2 workers h :1"


def test_set_title_calls_only_on_change(recorder: list[str]) -> None:
    assert titles.title() is None
    assert titles.set_title("one") is True
    assert titles.set_title("one") is False
    assert titles.set_title("two") is True
    assert titles.set_title("one") is True
    assert recorder == ["one", "two", "one"]
    assert titles.title() == "one"


def test_set_title_without_setproctitle_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(titles, "_setproctitle", None)
    monkeypatch.setattr(titles, "_last", None)
    assert not titles.available()
    assert titles.set_title("anything") is False
    assert titles.title() is None


def read_cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


@pytest.mark.skipif(not titles.available(), reason="setproctitle is not installed")
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_title_shows_in_proc_cmdline_of_a_forked_child() -> None:
    text = titles.worker_title(3, f"test-{os.getpid()}", "busy", 1523)
    own_before = read_cmdline(os.getpid())
    hold_r, hold_w = os.pipe()

    def child() -> None:
        os.close(hold_w)
        titles.set_title(text)
        os.read(hold_r, 1)  # stay alive until the parent closes its end

    try:
        with forked(child) as pid:
            os.close(hold_r)
            seen = wait_for(
                lambda: text in read_cmdline(pid) and read_cmdline(pid),
                CHILD_TIMEOUT,
                what="the child's title in /proc",
            )
            assert seen == text
            assert read_cmdline(os.getpid()) == own_before  # the parent's title is untouched
            os.close(hold_w)
            hold_w = -1
            assert wait_exit(pid) == 0
    finally:
        if hold_w >= 0:
            os.close(hold_w)
