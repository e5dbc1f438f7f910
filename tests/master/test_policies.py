"""Policies: pure decisions over a fake PoolView and a clock given as ``now``."""

from __future__ import annotations

import pytest
from master_fakes import FakeServer, FakeView, slot, worker

from prefork.core.scoreboard import State
from prefork.master.policies import (
    HUNG_LOOKS_PER_TIMEOUT,
    KILLED,
    RUNAWAY_DUMP_GRACE,
    RUNAWAY_GRACE,
    STACK_DUMP_GRACE,
    DumpStack,
    Intervals,
    Kill,
    Policies,
    Recycle,
    Resize,
)

NOW = 1000.0
TINY = Intervals(memory=0.001, adapt=0.001, hung_look_max=0.25)


def policies(**settings: object) -> tuple[Policies, FakeServer]:
    server = FakeServer(**settings)
    return Policies(server, TINY), server  # type: ignore[arg-type]


def busy_since(view: FakeView, info: object, started: float) -> None:
    view.slots[info.pid] = slot(info, State.BUSY, request_started=started)  # type: ignore[attr-defined]


# -- nothing configured ------------------------------------------------------------------------


def test_nothing_configured_nothing_to_do() -> None:
    pol, _ = policies()
    view = FakeView(worker(), worker())
    assert pol.check(view, NOW) == []
    assert pol.deadline(view, NOW) is None
    assert view.memory_reads == []
    assert not pol.adaptive()


# -- hung requests -----------------------------------------------------------------------------


def test_hung_request_dumps_the_stack_then_kills_after_the_grace() -> None:
    pol, _ = policies(request_timeout=1.0)
    hung, fine = worker(), worker()
    view = FakeView(hung, fine)
    busy_since(view, hung, NOW - 1.5)
    busy_since(view, fine, NOW - 0.5)
    actions = pol.check(view, NOW)
    assert actions == [DumpStack(hung, pytest.approx(1.5), pytest.approx(NOW + STACK_DUMP_GRACE))]

    hung.kill_at = actions[0].kill_at  # what the master does with it (Pool.dump_then_kill)
    hung.stopping = True
    assert pol.check(view, NOW + STACK_DUMP_GRACE / 2) == []  # no second dump, no kill yet
    assert pol.deadline(view, NOW) == pytest.approx(hung.kill_at)
    assert pol.check(view, hung.kill_at) == [Kill(hung)]
    view.slots[fine.pid] = slot(fine)  # its request done
    assert pol.check(view, hung.kill_at + 5) == [Kill(hung)]  # until the master clears kill_at


def test_a_request_exactly_at_the_timeout_is_not_hung() -> None:
    pol, _ = policies(request_timeout=1.0)
    info = worker()
    view = FakeView(info)
    busy_since(view, info, NOW - 1.0)
    assert pol.check(view, NOW) == []


def test_idle_and_booting_workers_are_never_hung() -> None:
    pol, _ = policies(request_timeout=1.0)
    idle, booting = worker(), worker(ready=False)
    view = FakeView(idle, booting)
    busy_since(view, booting, NOW - 60)  # a slot left from before: not a request of its own
    assert pol.check(view, NOW) == []


def test_the_timeout_is_read_at_each_check() -> None:
    pol, server = policies(request_timeout=1.0)
    info = worker()
    view = FakeView(info)
    busy_since(view, info, NOW - 5)
    server.request_timeout = 0.0  # a reload turned it off
    assert pol.check(view, NOW) == []
    server.request_timeout = 10.0
    assert pol.check(view, NOW) == []
    server.request_timeout = 2.0
    assert [type(a) for a in pol.check(view, NOW)] == [DumpStack]


def test_hung_look_interval_is_a_fraction_of_the_timeout_capped() -> None:
    pol, _ = policies(request_timeout=0.4)
    view = FakeView(worker())
    assert pol.deadline(view, NOW) == pytest.approx(NOW + 0.4 / HUNG_LOOKS_PER_TIMEOUT)
    pol, _ = policies(request_timeout=60.0)
    assert pol.deadline(view, NOW) == pytest.approx(NOW + TINY.hung_look_max)


# -- max_age -----------------------------------------------------------------------------------


def test_max_age_recycles_once_the_time_has_come() -> None:
    pol, _ = policies()
    young, due = worker(recycle_at=NOW + 10), worker(recycle_at=NOW - 0.001)
    view = FakeView(young, due)
    assert pol.check(view, NOW) == [Recycle(due, "max_age")]
    assert pol.deadline(view, NOW) == pytest.approx(NOW - 0.001)
    due.recycle_at = 0.0  # the master: due once
    assert pol.deadline(view, NOW) == pytest.approx(NOW + 10)
    assert pol.check(view, NOW + 10) == [Recycle(young, "max_age")]


def test_a_pending_kill_comes_before_recycling() -> None:
    pol, _ = policies()
    info = worker(recycle_at=NOW - 1, kill_at=NOW - 1)
    assert pol.check(FakeView(info), NOW) == [Kill(info)]


# -- max_memory --------------------------------------------------------------------------------


def test_max_memory_is_checked_only_every_interval() -> None:
    pol, _ = policies(max_memory=100)
    fat, thin = worker(), worker()
    view = FakeView(fat, thin)
    view.memory = {fat.pid: 150.0, thin.pid: 50.0}
    assert pol.check(view, NOW) == [Recycle(fat, "max_memory")]
    assert sorted(view.memory_reads) == sorted([fat.pid, thin.pid])
    assert pol.deadline(view, NOW) == pytest.approx(NOW + TINY.memory)

    view.memory_reads.clear()
    assert pol.check(view, NOW + TINY.memory / 2) == []
    assert view.memory_reads == []  # not looked at between checks

    assert pol.check(view, NOW + TINY.memory) == [Recycle(fat, "max_memory")]
    assert len(view.memory_reads) == 2


def test_max_memory_spares_booting_workers_and_unknown_sizes() -> None:
    pol, _ = policies(max_memory=100)
    booting, gone = worker(ready=False), worker()
    view = FakeView(booting, gone)
    view.memory = {booting.pid: 500.0}  # ``gone`` has no /proc entry any more: None
    assert pol.check(view, NOW) == []


def test_a_custom_memory_interval_is_used() -> None:
    server = FakeServer(max_memory=10)
    pol = Policies(server, Intervals(memory=7.0))  # type: ignore[arg-type]
    view = FakeView(worker())
    pol.check(view, NOW)
    assert pol.next_memory_check == pytest.approx(NOW + 7.0)


# -- runaway requests (max_memory, mid-request) ------------------------------------------------

RUN = Intervals(memory=60.0, busy_memory=0.1, over_memory=0.02)


def stops(pol: Policies, view: FakeView, now: float) -> list[DumpStack]:
    """The mid-request stops of one check (not the recycling the first check also gives)."""
    return [a for a in pol.check(view, now) if isinstance(a, DumpStack)]


def runaway_policies(limit: int = 100) -> Policies:
    return Policies(FakeServer(max_memory=limit), RUN)  # type: ignore[arg-type]


def test_a_request_past_twice_the_limit_is_stopped_at_once() -> None:
    pol = runaway_policies()
    hog, idle_fat = worker(), worker()
    view = FakeView(hog, idle_fat)
    busy_since(view, hog, NOW - 0.3)
    view.memory = {hog.pid: 201.0, idle_fat.pid: 500.0}
    pol.check(view, NOW)  # the first look also reads every worker, for recycling
    view.memory_reads.clear()
    actions = pol.check(view, NOW + RUN.busy_memory)
    assert actions == [DumpStack(hog, pytest.approx(0.4), NOW + RUN.busy_memory
                                 + RUNAWAY_DUMP_GRACE, False, 201.0)]
    # Only the busy worker was read: an idle one cannot run away (it is recycled instead).
    assert view.memory_reads == [hog.pid]


def test_busy_workers_are_looked_at_often_and_more_often_once_over() -> None:
    pol = runaway_policies()
    info = worker()
    view = FakeView(info)
    assert pol.check(view, NOW) == []  # idle: nothing read between the recycling checks
    assert pol.deadline(view, NOW) == pytest.approx(NOW + RUN.busy_memory)
    busy_since(view, info, NOW)
    view.memory = {info.pid: 150.0}  # over, under twice
    assert pol.check(view, NOW + RUN.busy_memory) == []
    assert pol.deadline(view, NOW + RUN.busy_memory) == pytest.approx(
        NOW + RUN.busy_memory + RUN.over_memory)


def test_a_request_over_the_limit_for_the_grace_is_stopped() -> None:
    pol = runaway_policies()
    info = worker()
    view = FakeView(info)
    busy_since(view, info, NOW)
    view.memory = {info.pid: 150.0}
    assert stops(pol, view, NOW) == []
    assert stops(pol, view, NOW + RUNAWAY_GRACE - RUN.over_memory) == []
    assert stops(pol, view, NOW + RUNAWAY_GRACE - RUN.over_memory / 2) == []  # no look yet
    (action,) = stops(pol, view, NOW + RUNAWAY_GRACE)
    assert isinstance(action, DumpStack) and action.rss_mb == 150.0


def test_the_grace_starts_again_with_each_request_and_under_the_limit() -> None:
    pol = runaway_policies()
    info = worker()
    view = FakeView(info)
    busy_since(view, info, NOW)
    view.memory = {info.pid: 150.0}
    assert stops(pol, view, NOW) == []
    busy_since(view, info, NOW + 2.0)  # a new request: its own grace
    assert stops(pol, view, NOW + 2.0) == []
    assert stops(pol, view, NOW + RUNAWAY_GRACE + 1.0) == []
    view.memory = {info.pid: 90.0}  # under: forgotten
    assert stops(pol, view, NOW + RUNAWAY_GRACE + 1.5) == []
    view.memory = {info.pid: 150.0}
    assert stops(pol, view, NOW + 2 * RUNAWAY_GRACE + 1.0) == []
    assert stops(pol, view, NOW + 3 * RUNAWAY_GRACE + 1.5) != []


def test_a_worker_already_being_killed_is_not_stopped_twice() -> None:
    pol = runaway_policies()
    info = worker(kill_at=NOW + 1)
    view = FakeView(info)
    busy_since(view, info, NOW - 1)
    view.memory = {info.pid: 900.0}
    assert stops(pol, view, NOW) == []


def test_a_stopped_worker_is_reported_stopped_not_asked_for_a_dump() -> None:
    pol, _ = policies(request_timeout=1.0)
    frozen = worker()
    view = FakeView(frozen)
    busy_since(view, frozen, NOW - 2.0)
    view.stopped_pids.add(frozen.pid)
    assert pol.check(view, NOW) == [DumpStack(frozen, 2.0, NOW + STACK_DUMP_GRACE, True)]


def test_timeout_and_runaway_together_give_one_action() -> None:
    server = FakeServer(max_memory=100, request_timeout=1.0)
    pol = Policies(server, RUN)  # type: ignore[arg-type]
    info = worker()
    view = FakeView(info)
    busy_since(view, info, NOW - 2.0)
    view.memory = {info.pid: 900.0}
    actions = pol.check(view, NOW)
    assert [type(a) for a in actions if not isinstance(a, Recycle)] == [DumpStack]


# -- the adaptive pool -------------------------------------------------------------------------


def idle_view(size: int, idle: int) -> FakeView:
    infos = [worker() for _ in range(size)]
    view = FakeView(*infos)
    for info in infos[idle:]:
        busy_since(view, info, NOW - 0.01)
    return view


def test_grows_one_step_per_look_while_too_few_are_idle() -> None:
    pol, _ = policies(workers=2, max_children=4, min_spare=2)
    view = idle_view(size=2, idle=1)
    actions = pol.check(view, NOW)
    assert [(a.size, a.retire) for a in actions if isinstance(a, Resize)] == [(3, None)]
    view.size = 3  # applied; the new worker boots busy-free but the look is spent
    assert pol.check(view, NOW + TINY.adapt / 2) == []
    assert [a.size for a in pol.check(view, NOW + TINY.adapt)] == [4]


def test_never_grows_beyond_max_children() -> None:
    pol, _ = policies(workers=2, max_children=4, min_spare=3)
    view = idle_view(size=4, idle=0)
    assert pol.check(view, NOW) == []


def test_shrinks_one_step_retiring_the_youngest_idle() -> None:
    pol, _ = policies(workers=2, max_children=8, max_spare=1)
    view = idle_view(size=4, idle=3)
    youngest_idle = max(view.workers[:3], key=lambda w: w.age)
    actions = pol.check(view, NOW)
    assert len(actions) == 1 and isinstance(actions[0], Resize)
    assert actions[0].size == 3 and actions[0].retire is youngest_idle


def test_never_shrinks_below_workers() -> None:
    pol, _ = policies(workers=4, max_children=8, max_spare=1)
    view = idle_view(size=4, idle=4)
    assert pol.check(view, NOW) == []


def test_no_resize_while_not_steady() -> None:
    pol, _ = policies(workers=2, max_children=4, min_spare=2)
    view = idle_view(size=2, idle=0)
    view.is_steady = False
    assert pol.check(view, NOW) == []
    view.is_steady = True
    assert pol.check(view, NOW) == []  # the look was spent
    assert [a.size for a in pol.check(view, NOW + TINY.adapt)] == [3]


def test_only_current_workers_count_as_idle() -> None:
    pol, _ = policies(workers=2, max_children=4, min_spare=2)
    view = idle_view(size=2, idle=1)
    view.workers.append(worker(stopping=True))  # idle, but leaving
    view.slots[view.workers[-1].pid] = slot(view.workers[-1], State.IDLE)
    assert [a.size for a in pol.check(view, NOW)] == [3]


def test_adaptive_deadline_is_the_next_look() -> None:
    pol, _ = policies(workers=2, max_children=4, max_spare=2)
    assert pol.adaptive()
    view = idle_view(size=2, idle=2)
    assert pol.deadline(view, NOW) == 0.0  # never looked: now
    pol.check(view, NOW)
    assert pol.deadline(view, NOW) == pytest.approx(NOW + TINY.adapt)


# -- boot timeout --------------------------------------------------------------------------------


def test_a_worker_not_ready_within_boot_timeout_is_killed_once() -> None:
    pol, _ = policies(boot_timeout=10.0)
    stuck = worker(ready=False, started=NOW - 11)
    young = worker(ready=False, started=NOW - 2)
    view = FakeView(stuck, young)
    assert pol.deadline(view, NOW) == NOW - 11 + 10  # overdue: the loop does not wait
    (action,) = pol.check(view, NOW)
    assert isinstance(action, Kill) and action.worker is stuck and action.boot_waited == 11
    stuck.kill_at = KILLED  # as the master applies it: no second kill, no deadline
    assert pol.check(view, NOW) == []
    assert pol.deadline(view, NOW) == NOW - 2 + 10


def test_boot_timeout_zero_waits_for_ever() -> None:
    pol, _ = policies(boot_timeout=0.0)
    view = FakeView(worker(ready=False, started=NOW - 3600))
    assert pol.check(view, NOW) == [] and pol.deadline(view, NOW) is None
