"""Upgrade: which old master is trusted, the hand-off, the queued USR2, describe_status.
Nothing here execs or signals a real process: os.kill is replaced where it would be called."""

from __future__ import annotations

import logging
import os
import selectors
import signal
from collections.abc import Iterator

import pytest
from master_fakes import FakeServer

from prefork.master import upgrade as upgrade_module
from prefork.master.pool import EXIT_UNKNOWN
from prefork.master.upgrade import ENV_OLD_MASTER, Upgrade, describe_status


@pytest.fixture
def selector() -> Iterator[selectors.BaseSelector]:
    with selectors.DefaultSelector() as sel:
        yield sel


def make(selector: selectors.BaseSelector, **settings: object) -> tuple[Upgrade, FakeServer]:
    server = FakeServer(**settings)
    return Upgrade(server, selector, (), None), server  # type: ignore[arg-type]


@pytest.fixture
def kills(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(upgrade_module.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    return sent


# -- describe_status ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (0, "exit status 0"),
        (1 << 8, "exit status 1"),
        (EXIT_UNKNOWN, "exit status 255"),
        (signal.SIGKILL, "killed by SIGKILL"),
        (signal.SIGSEGV | 0x80, "killed by SIGSEGV"),  # with a core dump
        (100, "killed by signal 100"),  # no such signal name
    ],
)
def test_describe_status(status: int, text: str) -> None:
    assert describe_status(status) == text


# -- the old master ----------------------------------------------------------------------------


def test_the_parent_is_trusted_as_the_old_master(
    monkeypatch: pytest.MonkeyPatch, selector: selectors.BaseSelector,
) -> None:
    monkeypatch.setenv(ENV_OLD_MASTER, str(os.getppid()))
    up, _ = make(selector)
    assert up.old_master == os.getppid()
    assert ENV_OLD_MASTER not in os.environ  # read once, not passed on to workers


@pytest.mark.parametrize("value", ["self", "1", "abc", "", "-5", " 12"])
def test_anyone_but_the_parent_is_not_trusted(
    monkeypatch: pytest.MonkeyPatch, selector: selectors.BaseSelector, value: str,
) -> None:
    monkeypatch.setenv(ENV_OLD_MASTER, str(os.getpid()) if value == "self" else value)
    up, _ = make(selector)
    assert up.old_master == 0
    assert ENV_OLD_MASTER not in os.environ


def test_no_variable_no_old_master(
    monkeypatch: pytest.MonkeyPatch, selector: selectors.BaseSelector,
) -> None:
    monkeypatch.delenv(ENV_OLD_MASTER, raising=False)
    up, _ = make(selector)
    assert up.old_master == 0


def test_retire_old_master_sends_term_once(
    monkeypatch: pytest.MonkeyPatch, selector: selectors.BaseSelector,
    kills: list[tuple[int, int]],
) -> None:
    monkeypatch.setenv(ENV_OLD_MASTER, str(os.getppid()))
    up, _ = make(selector)
    up.retire_old_master()
    up.retire_old_master()
    assert kills == [(os.getppid(), signal.SIGTERM)]
    assert up.old_master == 0


def test_retire_without_an_old_master_signals_nobody(
    monkeypatch: pytest.MonkeyPatch, selector: selectors.BaseSelector,
    kills: list[tuple[int, int]],
) -> None:
    monkeypatch.delenv(ENV_OLD_MASTER, raising=False)
    up, _ = make(selector)
    up.retire_old_master()
    assert kills == []


# -- the old master's side ---------------------------------------------------------------------


def test_start_while_stopping_or_without_argv_starts_nothing(
    monkeypatch: pytest.MonkeyPatch, selector: selectors.BaseSelector,
) -> None:
    monkeypatch.delenv(ENV_OLD_MASTER, raising=False)
    up, _ = make(selector, upgrade_argv=["/bin/false"])
    up.start(stopping=True)
    assert up.pid == 0 and not up.queued
    up, _ = make(selector, upgrade_argv=None)
    up.start()
    assert up.pid == 0 and not up.queued


def test_usr2_during_an_upgrade_is_queued(
    monkeypatch: pytest.MonkeyPatch, selector: selectors.BaseSelector,
) -> None:
    monkeypatch.delenv(ENV_OLD_MASTER, raising=False)
    up, _ = make(selector, upgrade_argv=["/bin/false"])
    up.pid = 5_000_001  # a new master in flight
    up.start()
    assert up.queued
    assert up.pid == 5_000_001


def test_a_failed_new_master_lets_the_queued_usr2_start_another(
    monkeypatch: pytest.MonkeyPatch, selector: selectors.BaseSelector,
) -> None:
    monkeypatch.delenv(ENV_OLD_MASTER, raising=False)
    up, _ = make(selector)
    r, w = os.pipe()  # stands in for the new master's pidfd
    os.close(w)
    up.pid, up.pidfd, up.queued = os.getppid(), r, True  # not our child: status unknown
    selector.register(r, selectors.EVENT_READ, up._exited)
    started: list[bool] = []
    monkeypatch.setattr(up, "start", lambda stopping=False: started.append(stopping))
    up._exited(selectors.EVENT_READ)
    assert started == [False]
    assert up.pid == 0 and up.pidfd is None and not up.queued
    assert r not in selector.get_map()
    with pytest.raises(OSError):
        os.fstat(r)  # closed


def test_hand_off_only_with_a_new_master_and_once(
    monkeypatch: pytest.MonkeyPatch, selector: selectors.BaseSelector,
) -> None:
    monkeypatch.delenv(ENV_OLD_MASTER, raising=False)
    up, server = make(selector)
    up.hand_off()  # a plain TERM: no new master, the socket file is ours to remove
    assert not up.handed_off and server.kept_socket_file == 0
    up.pid = 5_000_002
    up.hand_off()
    up.hand_off()
    assert up.handed_off and server.kept_socket_file == 1


def test_pid_1_refuses_usr2(
    selector: selectors.BaseSelector, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As PID 1 (a container), the old master's exit would end the namespace and the new master
    with it: USR2 is refused with a warning, nothing is started."""
    started: list[object] = []
    up, _ = make(selector, upgrade_argv=["prefork", "serve"])
    monkeypatch.setattr(upgrade_module.os, "getpid", lambda: 1)
    monkeypatch.setattr(upgrade_module, "exec_new_master", lambda *a: started.append(a) or 99)
    with caplog.at_level(logging.WARNING, logger="prefork.master"):
        up.start()
    assert started == [] and up.pid == 0
    assert "as PID 1" in caplog.text
