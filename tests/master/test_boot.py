"""BootGuard: back-off with injectable jitter, one probe at a time, BootError at the limit."""

from __future__ import annotations

import pytest

from prefork.master.boot import BACKOFF_BASE, BootError, BootGuard


def no_jitter(low: float, high: float) -> float:
    return 1.0


def test_first_failure_delays_the_next_spawn_by_the_base() -> None:
    guard = BootGuard(limit=5, base=0.1, jitter=no_jitter)
    assert guard.may_spawn(100.0)
    assert guard.failed("exit status 1", "worker 1", now=100.0) is None
    assert guard.not_before == pytest.approx(100.1)
    assert not guard.may_spawn(100.05)
    assert guard.may_spawn(100.1)
    assert guard.deadline(100.05) == pytest.approx(100.1)
    assert guard.deadline(100.1) is None  # over: nothing to wait for


def test_the_delay_doubles_per_failure_up_to_the_cap() -> None:
    guard = BootGuard(limit=100, base=0.1, cap=0.5, jitter=no_jitter)
    delays = []
    for _ in range(5):
        guard.failed("exit status 1", "worker", now=0.0)
        delays.append(guard.not_before)
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_jitter_is_asked_for_a_factor_between_half_and_one_and_a_half() -> None:
    asked: list[tuple[float, float]] = []

    def lowest(low: float, high: float) -> float:
        asked.append((low, high))
        return low

    guard = BootGuard(limit=5, base=0.2, jitter=lowest)
    guard.failed("why", "worker", now=10.0)
    assert asked == [(0.5, 1.5)]
    assert guard.not_before == pytest.approx(10.1)


def test_default_base_is_the_module_constant() -> None:
    guard = BootGuard(limit=5, jitter=no_jitter)
    guard.failed("why", "worker", now=0.0)
    assert guard.not_before == pytest.approx(BACKOFF_BASE)


def test_limit_in_a_row_gives_boot_error() -> None:
    guard = BootGuard(limit=3, jitter=no_jitter)
    assert guard.failed("exit status 1", "worker 1", now=0.0) is None
    assert guard.failed("exit status 1", "worker 2", now=1.0) is None
    error = guard.failed("killed by SIGSEGV", "worker 3", now=2.0)
    assert isinstance(error, BootError)
    assert guard.error is error
    assert error.exit_status == 3
    assert "3 in a row" in str(error) and "killed by SIGSEGV" in str(error)


def test_limit_one_fails_at_the_first() -> None:
    guard = BootGuard(limit=1, jitter=no_jitter)
    assert isinstance(guard.failed("why", "worker", now=0.0), BootError)


def test_a_ready_worker_ends_the_streak() -> None:
    guard = BootGuard(limit=3, jitter=no_jitter)
    guard.failed("why", "w", now=0.0)
    guard.failed("why", "w", now=0.0)
    guard.succeeded()
    assert guard.failures == 0
    assert guard.failed("why", "w", now=0.0) is None
    assert guard.failed("why", "w", now=0.0) is None
    assert guard.error is None
    # and the back-off starts over from the base
    guard.succeeded()
    guard.failed("why", "w", now=50.0)
    assert guard.not_before == pytest.approx(50.0 + BACKOFF_BASE)


def test_budget_is_everything_missing_without_failures() -> None:
    guard = BootGuard(limit=3)
    assert guard.budget(missing=4, booting=0) == 4
    assert guard.budget(missing=4, booting=3) == 4
    assert guard.budget(missing=0, booting=0) == 0


def test_budget_probes_one_at_a_time_after_a_failure() -> None:
    guard = BootGuard(limit=10, jitter=no_jitter)
    guard.failed("why", "w", now=0.0)
    assert guard.budget(missing=4, booting=0) == 1
    assert guard.budget(missing=4, booting=1) == 0  # the probe is still booting
    assert guard.budget(missing=4, booting=2) <= 0
    assert guard.budget(missing=0, booting=0) == 0
    guard.succeeded()
    assert guard.budget(missing=4, booting=1) == 4


def test_reaching_the_limit_calls_give_up_once() -> None:
    calls: list[str] = []
    guard = BootGuard(limit=2, give_up=lambda: calls.append("stop"), jitter=no_jitter)
    assert guard.failed("exit status 1", "worker 1", now=0.0) is None
    assert calls == []
    assert guard.failed("exit status 1", "worker 2", now=1.0) is not None
    assert calls == ["stop"]


def test_a_ready_report_ends_the_streak_only_after_the_crash_window() -> None:
    guard = BootGuard(limit=3, jitter=no_jitter)
    guard.failed("why", "w", now=0.0)
    guard.ready(now=1.0, window=2.0)
    assert guard.failures == 1
    assert guard.deadline(now=1.0) == pytest.approx(3.0)  # the loop wakes to settle it
    assert guard.may_spawn(now=2.9) and guard.failures == 1
    guard.failed("died right after ready", "w", now=2.9)  # inside the window: counted
    assert guard.failures == 2
    guard.ready(now=4.0, window=2.0)
    assert guard.may_spawn(now=6.0)
    assert guard.failures == 0  # it lived through the window


def test_a_crash_loop_after_ready_reaches_the_limit() -> None:
    guard = BootGuard(limit=3, jitter=no_jitter)
    now, error = 0.0, None
    for _ in range(3):
        guard.ready(now, window=2.0)
        now += 0.1
        error = guard.failed("exit status 1", "w", now, after_ready=0.1)
        now += 0.1
    assert isinstance(error, BootError)
    assert "0.10 s after ready" in str(error)


def test_a_failure_after_the_window_starts_a_new_streak() -> None:
    guard = BootGuard(limit=3, jitter=no_jitter)
    guard.failed("why", "w", now=0.0)
    guard.failed("why", "w", now=0.0)
    guard.ready(now=1.0, window=2.0)
    assert guard.failed("why", "w", now=10.0) is None  # settled at 3.0 first
    assert guard.failures == 1
