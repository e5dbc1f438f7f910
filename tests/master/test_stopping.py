"""Stop: graceful or quick, its deadline, escalation, closing listeners, telling the pool."""

from __future__ import annotations

import signal

import pytest
from master_fakes import FakePool, FakeServer

from prefork.master.stopping import Stop, StopMode


def make(**settings: object) -> tuple[Stop, FakeServer, FakePool]:
    server = FakeServer(graceful_timeout=30.0, quick_timeout=5.0, **settings)
    pool = FakePool()
    return Stop(server, pool), server, pool  # type: ignore[arg-type]


def test_nothing_requested() -> None:
    stop, _, pool = make()
    assert not stop.requested
    assert stop.deadline() is None
    assert not stop.over(100.0, workers_left=0)  # no workers is no stop
    assert pool.broadcasts == []


def test_graceful_stop_sends_term_and_sets_its_deadline() -> None:
    stop, _, pool = make()
    assert stop.request(StopMode.GRACEFUL, now=100.0) is True
    assert stop.requested and stop.mode is StopMode.GRACEFUL
    assert stop.deadline() == pytest.approx(130.0)
    assert pool.broadcasts == [signal.SIGTERM]


def test_quick_stop_sends_quit_and_sets_its_deadline() -> None:
    stop, _, pool = make()
    assert stop.request(StopMode.QUICK, now=100.0) is True
    assert stop.deadline() == pytest.approx(105.0)
    assert pool.broadcasts == [signal.SIGQUIT]


def test_the_timeouts_are_read_when_the_stop_begins() -> None:
    stop, server, _ = make()
    server.graceful_timeout = 2.0  # a reload changed it after the Stop was made
    stop.request(StopMode.GRACEFUL, now=10.0)
    assert stop.deadline() == pytest.approx(12.0)


def test_quick_overtakes_graceful() -> None:
    stop, _, pool = make()
    stop.request(StopMode.GRACEFUL, now=100.0)
    assert stop.request(StopMode.QUICK, now=110.0) is False  # not a new stop
    assert stop.mode is StopMode.QUICK
    assert stop.deadline() == pytest.approx(115.0)
    assert pool.broadcasts == [signal.SIGTERM, signal.SIGQUIT]


def test_quick_overtaking_late_keeps_the_earlier_graceful_deadline() -> None:
    stop, _, _ = make()
    stop.request(StopMode.GRACEFUL, now=100.0)
    stop.request(StopMode.QUICK, now=128.0)
    assert stop.deadline() == pytest.approx(130.0)  # not 133


def test_graceful_never_overtakes_quick() -> None:
    stop, _, pool = make()
    stop.request(StopMode.QUICK, now=100.0)
    assert stop.request(StopMode.GRACEFUL, now=101.0) is False
    assert stop.mode is StopMode.QUICK
    assert stop.deadline() == pytest.approx(105.0)
    assert pool.broadcasts == [signal.SIGQUIT]


def test_a_repeated_graceful_stop_changes_nothing() -> None:
    stop, _, pool = make()
    stop.request(StopMode.GRACEFUL, now=100.0)
    stop.request(StopMode.GRACEFUL, now=120.0)
    assert stop.deadline() == pytest.approx(130.0)
    assert pool.broadcasts == [signal.SIGTERM]


def test_second_interrupt_kills_at_once() -> None:
    stop, _, pool = make()
    stop.request(StopMode.QUICK, now=100.0, escalate=True)
    assert not stop.kill_now
    assert not stop.over(100.0, workers_left=2)
    stop.request(StopMode.QUICK, now=100.5, escalate=True)
    assert stop.kill_now
    assert stop.over(100.5, workers_left=2)  # before the deadline, workers still there
    assert pool.broadcasts == [signal.SIGQUIT]  # the kill is the loop's, not another signal


def test_second_quick_stop_without_escalation_waits_for_the_deadline() -> None:
    stop, _, _ = make()
    stop.request(StopMode.QUICK, now=100.0)
    stop.request(StopMode.QUICK, now=101.0)
    assert not stop.kill_now
    assert not stop.over(101.0, workers_left=1)


def test_over_when_no_worker_is_left_or_at_the_deadline() -> None:
    stop, _, _ = make()
    stop.request(StopMode.GRACEFUL, now=100.0)
    assert not stop.over(129.9, workers_left=3)
    assert stop.over(129.9, workers_left=0)
    assert stop.over(130.0, workers_left=3)


def test_close_closes_the_listening_sockets() -> None:
    stop, server, _ = make()
    server.listeners.append(type(server.listeners[0])())
    stop.request(StopMode.GRACEFUL, now=0.0, close=True)
    assert all(listener.socket.closed for listener in server.listeners)


def test_without_close_the_sockets_stay_open() -> None:
    stop, server, _ = make()
    stop.request(StopMode.GRACEFUL, now=0.0)  # shutdown(): server_close() closes them
    assert not server.listeners[0].socket.closed


def test_worker_signals() -> None:
    assert StopMode.GRACEFUL.worker_signal == signal.SIGTERM
    assert StopMode.QUICK.worker_signal == signal.SIGQUIT
