"""Master's decisions, driven without forking.

A real :class:`Master` over a fake server, whose pool forks nothing: ``spawn`` records a
``WorkerInfo`` with a fake pid (and a real scoreboard slot), ``signal``/``kill_group``/``reap``
record or replay.  The tests feed what the loop would see -- reports, exits, signals, the clock
(the supervisor's ``time`` is a fake) -- to ``_on_report``/``_on_exit``/``on_signal``/
``_check``/``_maintain`` and look at the phase, the spawns and the signals sent.
"""

from __future__ import annotations

import itertools
import os
import selectors
import signal
from collections.abc import Callable, Iterator

import pytest
from master_fakes import FAKE_PID_BASE, Clock, FakeServer

from prefork.core.contract import REPORT, REPORT_READY, REPORT_RECYCLE, WorkerInfo
from prefork.master import spawning, supervisor
from prefork.master import upgrade as upgrade_module
from prefork.master.boot import CRASH_WINDOW, BootError
from prefork.master.policies import KILLED
from prefork.master.pool import ignore_event
from prefork.master.stopping import StopMode
from prefork.master.supervisor import Master, Phase
from prefork.master.upgrade import ENV_OLD_MASTER
from prefork.ops import titles

EXIT_1 = 1 << 8  # a waitpid status: exit code 1
EXIT_0 = 0


class Harness:
    """A Master whose pool forks and signals nothing."""

    def __init__(self, server: FakeServer, clock: Clock) -> None:
        self.server, self.clock = server, clock
        self.master = m = Master(server)  # type: ignore[arg-type]
        m.boot.jitter = lambda low, high: 1.0
        m.pool.use_pidfd = True  # no reap fallback interval in the deadlines
        self.pids = itertools.count(FAKE_PID_BASE + 100_000)
        self.spawned: list[WorkerInfo] = []
        self.sent: list[tuple[int, int]] = []  # (pid, signal)
        self.killed: list[int] = []  # process groups killed
        self.exits: list[tuple[WorkerInfo, int]] = []  # what the next reap() returns
        self.spawn_error: Exception | None = None
        self.closed = False
        m.pool.spawn = self._spawn  # type: ignore[method-assign]
        m.pool.signal = lambda info, sig: self.sent.append((info.pid, sig))  # type: ignore[method-assign]
        m.pool.kill_group = lambda info: self.killed.append(info.pid)  # type: ignore[method-assign]
        m.pool.reap = self._reap  # type: ignore[method-assign]
        # As run() does, so that _turn() can wait on them.
        m.selector.register(m.signals.read_fd, selectors.EVENT_READ, ignore_event)
        m.selector.register(m.pool.report_r, selectors.EVENT_READ, ignore_event)

    def _spawn(self, generation: int) -> WorkerInfo:
        pool = self.master.pool
        if self.spawn_error is not None:
            raise self.spawn_error
        pool.ages += 1
        used = {w.slot for w in pool.workers.values()}
        slot = next(i for i in range(pool.board.slots) if i not in used)
        info = WorkerInfo(age=pool.ages, slot=slot, generation=generation)
        self.server.pre_fork(info)
        info.pid, info.started = next(self.pids), self.clock.now
        pool.board.reset(slot, info.pid, generation, self.clock.now)
        pool.workers[info.pid] = info
        self.spawned.append(info)
        return info

    def _reap(self) -> list[tuple[WorkerInfo, int]]:
        out, self.exits = self.exits, []
        for info, _ in out:
            self.master.pool.workers.pop(info.pid, None)
            board = self.master.pool.board
            info.died_busy = board.read(info.slot).request_started > 0.0  # as Pool._forget
            board.clear(info.slot)
        return out

    # -- what the loop would see -------------------------------------------------------------

    def maintain(self) -> list[WorkerInfo]:
        """One _maintain(); the workers it spawned."""
        before = len(self.spawned)
        self.master._maintain()
        return self.spawned[before:]

    def ready(self, *infos: WorkerInfo) -> None:
        for info in infos:
            info.ready, info.ready_at = True, self.clock.now  # as Pool.read_reports does
            self.master._on_report(info, REPORT_READY)

    def exit(self, info: WorkerInfo, status: int = EXIT_0) -> None:
        self.exits.append((info, status))
        for reaped, code in self._reap():
            self.master._on_exit(reaped, code)

    def signal(self, sig: int) -> None:
        self.master.on_signal[sig]()

    def generation(self, number: int) -> list[WorkerInfo]:
        return self.master.pool.current(number)

    def sent_to(self, infos: list[WorkerInfo]) -> set[tuple[int, int]]:
        pids = {w.pid for w in infos}
        return {(pid, sig) for pid, sig in self.sent if pid in pids}

    def serving(self) -> list[WorkerInfo]:
        """Boot the first generation to SERVING."""
        infos = self.maintain()
        self.ready(*infos)
        self.maintain()
        assert self.master.phase is Phase.SERVING
        return infos

    def close(self) -> None:
        """What run() does at its end (kill every group left, close everything), once."""
        if not self.closed:
            self.closed = True
            self.master._close()


@pytest.fixture
def make(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Harness]]:
    monkeypatch.setattr(titles, "set_title", lambda text: False)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv(ENV_OLD_MASTER, raising=False)
    clock = Clock()
    # Only the clocks of the supervisor and of the spawner it drives.
    monkeypatch.setattr(supervisor, "time", clock)
    monkeypatch.setattr(spawning, "time", clock)
    made: list[Harness] = []

    def factory(**settings: object) -> Harness:
        harness = Harness(FakeServer(**settings), clock)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        harness.close()


# -- booting -----------------------------------------------------------------------------------


def test_booting_until_every_worker_is_ready_then_serving(make: Callable[..., Harness]) -> None:
    h = make(workers=3)
    m = h.master
    first = h.maintain()
    assert [w.generation for w in first] == [1, 1, 1]
    assert m.phase is Phase.BOOTING
    h.ready(*first[:2])
    assert h.maintain() == []
    assert m.phase is Phase.BOOTING and not m.announced
    h.ready(first[2])
    h.maintain()
    assert m.phase is Phase.SERVING and m.announced
    assert m.status()["master"]["phase"] == "serving"
    assert [c for c in h.server.calls if c[0] == "pre_fork"] == [("pre_fork", w.age)
                                                                  for w in first]


def test_boot_failures_up_to_the_limit_give_boot_error_and_a_quick_stop(
    make: Callable[..., Harness],
) -> None:
    h = make(workers=1, max_boot_failures=3)
    m = h.master
    for attempt in range(3):
        (probe,) = h.maintain()
        h.exit(probe, EXIT_1)
        if attempt < 2:
            assert m.phase is Phase.BOOTING
            assert h.maintain() == []  # backing off
            assert m._timeout() == pytest.approx(m.boot.not_before - h.clock.now)
            h.clock.now = m.boot.not_before
    assert isinstance(m.boot.error, BootError)
    assert m.phase is Phase.STOPPING and m.stop.mode is StopMode.QUICK
    assert len(h.spawned) == 3
    h.clock.advance(60)
    assert h.maintain() == []
    assert m.stop.over(h.clock.now, len(m.pool.workers))


def test_after_a_boot_failure_the_pool_refills_one_probe_at_a_time(
    make: Callable[..., Harness],
) -> None:
    h = make(workers=3, max_boot_failures=10)
    first = h.maintain()
    for info in first:
        h.exit(info, EXIT_1)
    assert h.master.boot.failures == 3
    h.clock.now = h.master.boot.not_before
    (probe,) = h.maintain()
    assert h.maintain() == []  # the probe still boots
    h.ready(probe)
    h.clock.now += CRASH_WINDOW  # the probe lived through it: the streak is over
    assert len(h.maintain()) == 2  # everything missing at once
    assert h.master.boot.failures == 0


def test_a_refused_spawn_is_a_boot_failure_not_a_crash(make: Callable[..., Harness]) -> None:
    h = make(workers=2, max_boot_failures=2)
    m = h.master
    h.spawn_error = OSError(11, "Resource temporarily unavailable")
    assert h.maintain() == []
    assert m.boot.failures == 1 and m.phase is Phase.BOOTING
    h.clock.now = m.boot.not_before
    h.maintain()
    assert isinstance(m.boot.error, BootError)
    assert m.phase is Phase.STOPPING


def test_a_crash_after_boot_is_replaced_at_once(make: Callable[..., Harness]) -> None:
    h = make(workers=2)
    a, _ = h.serving()
    h.clock.now += CRASH_WINDOW
    h.exit(a, signal.SIGSEGV)
    assert h.master.restarts == {"crash": 1}
    assert h.master.boot.failures == 0
    (replacement,) = h.maintain()  # no back-off, same instant
    assert replacement.generation == 1


def test_a_crash_soon_after_ready_is_backed_off(make: Callable[..., Harness]) -> None:
    h = make(workers=2, max_boot_failures=3)
    a, b = h.serving()
    h.exit(a, signal.SIGSEGV)  # at once after its ready report, in no request
    assert h.master.restarts == {"crash": 1}
    assert h.master.boot.failures == 1
    assert h.maintain() == []  # backed off
    h.clock.now = h.master.boot.not_before
    (c,) = h.maintain()
    h.ready(c)
    h.exit(c, signal.SIGSEGV)
    h.exit(b, signal.SIGSEGV)
    assert isinstance(h.master.boot.error, BootError)  # 3 in a row: the pool stops


def test_a_crash_in_a_request_soon_after_ready_is_replaced_at_once(
    make: Callable[..., Harness],
) -> None:
    h = make(workers=2)
    a, _ = h.serving()
    h.master.pool.board.writer(a.slot, a.pid).begin_request(h.clock.now)
    h.exit(a, signal.SIGSEGV)  # a client's request may have caused it: no back-off
    assert h.master.boot.failures == 0
    (replacement,) = h.maintain()
    assert replacement.generation == 1


# -- reload ------------------------------------------------------------------------------------


def test_hup_reloads_then_retires_the_old_generation_once_the_new_is_ready(
    make: Callable[..., Harness],
) -> None:
    h = make(workers=2)
    m = h.master
    old = h.serving()
    h.signal(signal.SIGHUP)
    assert m.phase is Phase.RELOADING and m.generations.number == 2
    new = h.maintain()
    assert [w.generation for w in new] == [2, 2]
    h.ready(new[0])
    h.maintain()
    assert m.phase is Phase.RELOADING
    assert h.sent == []  # the old generation serves until the new one is ready
    h.ready(new[1])
    h.maintain()
    assert m.phase is Phase.SERVING
    assert h.sent_to(old) == {(w.pid, signal.SIGTERM) for w in old}
    assert h.sent_to(new) == set()
    assert m.restarts == {"reload": 2}  # the workers a reload replaced, not the reloads
    for info in old:
        h.exit(info)
    assert h.maintain() == [] and "crash" not in m.restarts


def test_reload_takes_the_new_size(make: Callable[..., Harness]) -> None:
    h = make(workers=2)
    h.serving()
    h.server.reload_settings = {"workers": 3}
    h.signal(signal.SIGHUP)
    assert h.master.size == 3
    assert len(h.maintain()) == 3


def test_a_new_generation_that_fails_to_boot_keeps_the_old_one(
    make: Callable[..., Harness],
) -> None:
    h = make(workers=3, max_boot_failures=1)  # an abort is not a boot failure
    m = h.master
    old = h.serving()
    h.server.reload_settings = {"workers": 4}
    h.signal(signal.SIGHUP)
    new = h.maintain()
    assert len(new) == 4
    h.ready(new[0])
    h.exit(new[1], EXIT_1)
    assert m.phase is Phase.SERVING
    assert m.generations.number == 1 and not m.generations.reloading
    assert h.server.rollbacks == 1 and m.size == 3 and h.server.workers == 3
    assert h.sent_to(new) == {(new[0].pid, signal.SIGTERM), (new[2].pid, signal.SIGQUIT),
                              (new[3].pid, signal.SIGQUIT)}
    assert h.sent_to(old) == set() and not any(w.stopping for w in old)
    assert m.boot.error is None and m.boot.failures == 0
    assert h.maintain() == []  # the old generation is complete
    for info in (new[0], new[2], new[3]):
        h.exit(info, signal.SIGQUIT)
    assert m.phase is Phase.SERVING and "crash" not in m.restarts and "reload" not in m.restarts


def test_a_refused_reload_changes_nothing(make: Callable[..., Harness]) -> None:
    h = make(workers=2)
    h.serving()
    h.server.reload_error = ValueError("bad config")
    h.signal(signal.SIGHUP)
    assert h.master.phase is Phase.SERVING and h.master.generations.number == 1
    assert h.maintain() == []


def test_a_hup_during_a_reload_is_queued_not_lost(make: Callable[..., Harness]) -> None:
    h = make(workers=1)
    m = h.master
    h.serving()
    h.signal(signal.SIGHUP)
    h.signal(signal.SIGHUP)
    assert m.generations.number == 2
    (second,) = h.maintain()
    h.ready(second)
    h.maintain()  # generation 2 ready: the queued HUP starts generation 3 at once
    assert m.phase is Phase.RELOADING and m.generations.number == 3
    assert [c for c in h.server.calls if c[0] == "prepare_reload"] == [("prepare_reload", None)] * 2
    (third,) = h.maintain()
    assert third.generation == 3
    h.ready(third)
    h.maintain()
    assert m.phase is Phase.SERVING and m.restarts == {"reload": 2}
    assert (second.pid, signal.SIGTERM) in h.sent


def test_a_hup_queued_behind_a_failed_reload_starts_another(
    make: Callable[..., Harness],
) -> None:
    h = make(workers=1)
    m = h.master
    h.serving()
    h.signal(signal.SIGHUP)
    h.signal(signal.SIGHUP)  # perhaps with the fix
    (broken,) = h.maintain()
    h.exit(broken, EXIT_1)
    assert h.server.rollbacks == 1
    assert m.phase is Phase.RELOADING and m.generations.number == 2
    (fixed,) = h.maintain()
    h.ready(fixed)
    h.maintain()
    assert m.phase is Phase.SERVING and m.generations.number == 2


# -- pause, scale ------------------------------------------------------------------------------


def test_winch_pauses_and_ttin_resumes(make: Callable[..., Harness]) -> None:
    h = make(workers=2, max_children=4)
    m = h.master
    old = h.serving()
    h.signal(signal.SIGWINCH)
    assert m.phase is Phase.PAUSED
    assert h.sent_to(old) == {(w.pid, signal.SIGTERM) for w in old}
    for info in old:
        h.exit(info)
    assert h.maintain() == [] and m._timeout() is None  # nothing to do until told
    assert "crash" not in m.restarts
    h.signal(signal.SIGTTIN)
    assert m.phase is Phase.SERVING and m.size == 3
    assert len(h.maintain()) == 3


def test_winch_during_a_reload_cancels_it_and_hup_resumes(make: Callable[..., Harness]) -> None:
    h = make(workers=2)
    m = h.master
    old = h.serving()
    h.signal(signal.SIGHUP)
    new = h.maintain()
    h.signal(signal.SIGWINCH)
    assert m.phase is Phase.PAUSED and not m.generations.reloading
    assert {pid for pid, _ in h.sent} == {w.pid for w in old + new}
    for info in old + new:
        h.exit(info, EXIT_1 if not info.ready else EXIT_0)
    assert m.boot.failures == 0  # they were asked to leave
    h.signal(signal.SIGHUP)
    assert m.phase is Phase.RELOADING and m.generations.number == 3
    resumed = h.maintain()
    assert [w.generation for w in resumed] == [3, 3]
    h.ready(*resumed)
    h.maintain()
    assert m.phase is Phase.SERVING


def test_ttin_ttou_stay_within_one_and_max_children(make: Callable[..., Harness]) -> None:
    h = make(workers=2, max_children=3)
    m = h.master
    h.serving()
    for _ in range(3):
        h.signal(signal.SIGTTIN)
    assert m.size == 3
    (third,) = h.maintain()
    h.signal(signal.SIGTTOU)
    assert m.size == 2 and h.sent == [(third.pid, signal.SIGTERM)]  # the youngest goes
    for _ in range(5):
        h.signal(signal.SIGTTOU)
    assert m.size == 1


# -- recycling and policies --------------------------------------------------------------------


def test_max_requests_report_replaces_first_then_retires(make: Callable[..., Harness]) -> None:
    h = make(workers=2)
    m = h.master
    a, _ = h.serving()
    m._on_report(a, REPORT_RECYCLE)
    (replacement,) = h.maintain()
    assert h.sent == []
    h.ready(replacement)
    h.maintain()
    assert h.sent == [(a.pid, signal.SIGTERM)]
    assert m.restarts == {"max_requests": 1}
    h.exit(a)
    assert h.maintain() == []


def test_a_hung_request_is_dumped_then_killed(make: Callable[..., Harness]) -> None:
    h = make(workers=2, request_timeout=1.0)
    m = h.master
    a, _ = h.serving()
    m.pool.board.writer(a.slot, a.pid).begin_request(h.clock.now - 2.0)
    m._check(h.clock.now)
    assert h.sent == [(a.pid, signal.SIGUSR2)] and a.stopping
    assert m.restarts == {"timeout": 1}
    (replacement,) = h.maintain()  # replaced at once
    m._check(h.clock.now)
    assert h.killed == []
    h.clock.now = a.kill_at
    m._check(h.clock.now)
    assert h.killed == [a.pid] and a.kill_at == KILLED
    h.exit(a, signal.SIGKILL)
    assert "crash" not in m.restarts and replacement.pid in m.pool.workers


def test_max_age_recycles_once(make: Callable[..., Harness]) -> None:
    h = make(workers=1)
    m = h.master
    (a,) = h.serving()
    a.recycle_at = h.clock.now - 0.1
    m._check(h.clock.now)
    assert a.recycle_at == 0.0
    (replacement,) = h.maintain()
    h.ready(replacement)
    h.maintain()
    assert h.sent == [(a.pid, signal.SIGTERM)] and m.restarts == {"max_age": 1}


def test_adaptive_pool_grows_in_the_master(make: Callable[..., Harness]) -> None:
    h = make(workers=2, max_children=4, min_spare=1)
    m = h.master
    h.serving()  # slots say BOOTING, not IDLE: no spare worker
    m._check(h.clock.now)
    assert m.size == 3
    assert len(h.maintain()) == 1


# -- stop --------------------------------------------------------------------------------------


def test_term_stops_gracefully_and_closes_the_listeners(make: Callable[..., Harness]) -> None:
    h = make(workers=2)
    m = h.master
    a, b = h.serving()
    h.signal(signal.SIGTERM)
    assert m.phase is Phase.STOPPING and m.stop.mode is StopMode.GRACEFUL
    assert h.server.listeners[0].socket.closed
    assert set(h.sent) == {(a.pid, signal.SIGTERM), (b.pid, signal.SIGTERM)}
    h.exit(a)
    assert h.maintain() == [] and "crash" not in m.restarts
    for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGWINCH):
        h.signal(sig)
    assert m.phase is Phase.STOPPING and m.size == 2 and m.generations.number == 1
    assert not m.stop.over(h.clock.now, len(m.pool.workers))
    h.exit(b)
    assert m.stop.over(h.clock.now, len(m.pool.workers))


def test_a_stop_during_a_reload_is_no_reload_failure(make: Callable[..., Harness]) -> None:
    h = make(workers=1)
    m = h.master
    h.serving()
    h.signal(signal.SIGHUP)
    (new,) = h.maintain()
    h.signal(signal.SIGTERM)
    h.exit(new, EXIT_1)
    assert h.server.rollbacks == 0 and m.boot.failures == 0 and m.phase is Phase.STOPPING


def test_a_second_interrupt_kills_without_waiting(make: Callable[..., Harness]) -> None:
    h = make(workers=2)
    m = h.master
    h.serving()
    h.signal(signal.SIGINT)
    assert m.stop.mode is StopMode.QUICK
    assert not m.stop.over(h.clock.now, 2)
    h.signal(signal.SIGINT)
    assert m.stop.over(h.clock.now, 2)
    h.close()  # what run() does next: every group killed
    assert sorted(h.killed) == sorted(w.pid for w in h.spawned)
    assert m.pool.workers == {}


def test_request_stop_from_another_thread_wakes_the_loop(make: Callable[..., Harness]) -> None:
    h = make(workers=1)
    m = h.master
    h.serving()
    m.request_stop(graceful=False)
    m._turn()  # returns at once: the self-pipe is readable
    assert m.phase is Phase.STOPPING and m.stop.mode is StopMode.QUICK
    assert not h.server.listeners[0].socket.closed  # shutdown() leaves that to server_close()


def test_a_ready_report_through_the_pipe_reaches_the_master(
    make: Callable[..., Harness],
) -> None:
    h = make(workers=1)
    m = h.master
    (a,) = h.maintain()
    os.write(m.pool.report_w, REPORT.pack(a.pid, REPORT_READY))
    m._turn()
    assert a.ready and m.phase is Phase.SERVING


# -- upgrade: the new master -------------------------------------------------------------------


def test_the_new_master_of_an_upgrade_retires_the_old_once_ready(
    make: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch,
) -> None:
    kills: list[tuple[int, int]] = []
    monkeypatch.setattr(upgrade_module.os, "kill", lambda pid, sig: kills.append((pid, sig)))
    monkeypatch.setenv(ENV_OLD_MASTER, str(os.getppid()))
    h = make(workers=2)
    first = h.maintain()
    h.ready(first[0])
    h.maintain()
    assert kills == []
    assert ("announce", None) not in h.server.calls  # rpcbind stays the old master's
    h.ready(first[1])
    h.maintain()
    assert kills == [(os.getppid(), signal.SIGTERM)]
    assert h.server.calls.count(("announce", None)) == 1  # ready: the listeners are ours


# -- bugs the review found, fixed ----------------------------------------------------------------


def test_a_recycling_replacement_that_fails_to_boot_waits_for_the_back_off(
    make: Callable[..., Harness],
) -> None:
    h = make(workers=1, max_boot_failures=5)
    m = h.master
    (a,) = h.serving()
    m._on_report(a, REPORT_RECYCLE)
    (replacement,) = h.maintain()
    h.exit(replacement, EXIT_1)
    assert m.boot.failures == 1 and m.boot.not_before > h.clock.now
    assert h.maintain() == []  # backing off: nothing forked before not_before
    h.clock.now = m.boot.not_before
    (retry,) = h.maintain()
    assert m.recycler.replacing == {retry.pid: a.pid}


def test_a_new_generation_that_cannot_be_spawned_keeps_the_old_one(
    make: Callable[..., Harness],
) -> None:
    h = make(workers=2, max_boot_failures=2)
    m = h.master
    old = h.serving()
    h.signal(signal.SIGHUP)
    h.spawn_error = OSError(11, "Resource temporarily unavailable")
    for _ in range(3):
        h.maintain()
        h.clock.advance(10)
    assert m.boot.error is None
    assert m.phase is Phase.SERVING and m.generations.number == 1
    assert h.server.rollbacks == 1
    assert h.sent_to(old) == set()


def test_a_killed_hung_worker_is_not_dumped_again_before_it_is_reaped(
    make: Callable[..., Harness],
) -> None:
    h = make(workers=1, request_timeout=1.0)
    m = h.master
    (a,) = h.serving()
    m.pool.board.writer(a.slot, a.pid).begin_request(h.clock.now - 2.0)
    m._check(h.clock.now)
    h.clock.now = a.kill_at
    m._check(h.clock.now)
    assert h.killed == [a.pid]
    h.clock.advance(0.25)  # the next look, the worker not reaped yet
    m._check(h.clock.now)
    assert m.restarts == {"timeout": 1}
    assert h.sent == [(a.pid, signal.SIGUSR2)]


def test_ttou_does_not_resume_a_paused_pool(make: Callable[..., Harness]) -> None:
    h = make(workers=3)
    m = h.master
    old = h.serving()
    h.signal(signal.SIGWINCH)
    for info in old:
        h.exit(info)
    h.signal(signal.SIGTTOU)
    assert m.phase is Phase.PAUSED
    assert h.maintain() == []
